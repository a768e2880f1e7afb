"""Freeze application: which parameters take gradients and which modules run in train mode, per stage."""

from __future__ import annotations

import pytest
from torch import nn
from toy import ToyHead, toy_backbone, toy_spec

from ftengine.planner import plan
from ftengine.runtime.freeze import apply_freeze, set_train_modes
from ftengine.runtime.model import FineTuneModel


def _setup(**freeze):
    spec = toy_spec(freeze={"stages": [{"trainable": ["head"], "epochs": 1},
                                       {"trainable": ["head", "block2"], "epochs": 1}], **freeze})
    backbone = toy_backbone()
    model = FineTuneModel(backbone, ToyHead(3))
    return spec, plan(spec, backbone, num_classes=3), model


def _grad_params(model):
    return {n.split(".")[1] if n.startswith("backbone.") else "head" for n, p in model.named_parameters()
            if p.requires_grad}


def test_requires_grad_follows_each_stage():
    _spec, graph, model = _setup()
    apply_freeze(model, graph, graph.stages[0])
    assert _grad_params(model) == {"head"}
    apply_freeze(model, graph, graph.stages[1])
    assert _grad_params(model) == {"head", "block2"}
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())


@pytest.mark.parametrize(("bn", "dropout"), [("eval", "eval"), ("train", "eval"), ("eval", "train"), ("train", "train")])
def test_frozen_modules_follow_the_batchnorm_and_dropout_policy(bn, dropout):
    _spec, graph, model = _setup(frozen_batchnorm=bn, frozen_dropout=dropout)
    set_train_modes(model, graph, graph.stages[1])
    assert model.head.training and model.head.dropout.training
    assert all(m.training for m in model.backbone.block2.modules())  # trainable group: train mode
    stem_bn = model.backbone.stem[1]
    assert isinstance(stem_bn, nn.BatchNorm1d) and stem_bn.training == (bn == "train")
    assert model.backbone.block1[2].training == (dropout == "train")  # frozen dropout


def test_train_modes_reset_after_evaluation():
    _spec, graph, model = _setup()
    model.eval()
    set_train_modes(model, graph, graph.stages[0])
    assert model.head.training
    groups = [m for g in graph.backbone_groups for root in model.backbone.group_modules(g.name) for m in root.modules()]
    assert groups and not any(m.training for m in groups)  # every group frozen, policy eval


def test_unused_pooler_stays_frozen_and_in_eval_mode(minilm_dir):
    """MiniLM with mean pooling: the pooler gets no gradient, so it never trains, whatever the policy."""
    from toy import REPO_SPECS

    from ftengine.backbones import build_backbone
    from ftengine.spec import load_spec

    spec = load_spec(REPO_SPECS / "text_full_finetune.yaml", ["freeze.frozen_dropout=train"])
    backbone = build_backbone(spec.backbone, pretrained=False, device="meta", base_dir=REPO_SPECS)
    graph = plan(spec, backbone, num_classes=3)
    model = FineTuneModel(backbone, nn.Linear(384, 3))
    apply_freeze(model, graph, graph.stages[0])
    set_train_modes(model, graph, graph.stages[0])
    assert not any(p.requires_grad for p in backbone.pooler.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if "pooler" not in n)
    assert not backbone.pooler.training and backbone.encoder.layer[0].training
