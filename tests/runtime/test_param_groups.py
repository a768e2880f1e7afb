"""Optimizer parameter groups: one per (layer group, decay kind); stage changes flip masks and LRs only."""

from __future__ import annotations

import pytest
from toy import ToyHead, toy_backbone, toy_spec

from ftengine.planner import plan
from ftengine.runtime.model import FineTuneModel
from ftengine.runtime.optimizer import FlatOptimizer
from ftengine.runtime.param_groups import apply_stage_settings, build_param_groups, is_no_decay, lr_summary


@pytest.fixture()
def setup():
    spec = toy_spec(optimizer={"lr": 1e-3, "head_lr": 1e-2, "weight_decay": 0.05})
    backbone = toy_backbone()
    model = FineTuneModel(backbone, ToyHead(3))
    return spec, plan(spec, backbone, num_classes=3), model


def test_every_parameter_in_exactly_one_group(setup):
    spec, graph, model = setup
    groups = build_param_groups(model, graph, spec.optimizer.no_decay)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert [g["name"] for g in groups] == [
        "stem/decay", "stem/no_decay", "block1/decay", "block1/no_decay", "block2/decay", "block2/no_decay",
        "head/decay", "head/no_decay"]


def test_no_decay_and_stage_zero_settings(setup):
    spec, graph, model = setup
    names = {id(p): n for n, p in model.named_parameters()}
    for g in build_param_groups(model, graph, spec.optimizer.no_decay):
        decay = g["name"].endswith("/decay")
        assert all(is_no_decay(names[id(p)], ["bias", "norm"]) != decay for p in g["params"])
        assert g["weight_decay"] == (0.05 if decay else 0.0)
        assert g["trainable"] == g["name"].startswith("head/")
        assert g["lr"] == pytest.approx(1e-2 if g["name"].startswith("head/") else graph.stages[0].group(
            g["name"].split("/")[0]).lr)


def test_no_decay_matches_substrings_case_insensitively():
    assert is_no_decay("backbone.embeddings.LayerNorm.weight", ["bias", "norm"])
    assert is_no_decay("backbone.encoder.layer.0.output.dense.bias", ["bias", "norm"])
    assert not is_no_decay("backbone.encoder.layer.0.output.dense.weight", ["bias", "norm"])


def test_stage_change_flips_masks_and_lrs_never_groups(setup):
    spec, graph, model = setup
    opt = FlatOptimizer(build_param_groups(model, graph, spec.optimizer.no_decay))
    before = [(g["name"], [id(p) for p in g["params"]]) for g in opt.param_groups]
    base = apply_stage_settings(opt, graph.stages[1])
    assert [(g["name"], [id(p) for p in g["params"]]) for g in opt.param_groups] == before
    trainable = {g["name"].split("/")[0] for g in opt.param_groups if g["trainable"]}
    assert trainable == {"head", "block2"}
    assert base["head/decay"] == pytest.approx(1e-2 * 0.5) and base["block2/no_decay"] == pytest.approx(1e-3 * 0.5)
    for g in opt.param_groups:
        g["lr"] = base[g["name"]]
    assert lr_summary(opt) == {"block2": pytest.approx(5e-4), "head": pytest.approx(5e-3)}


def test_l2sp_strengths_come_from_the_plan_per_group():
    spec = toy_spec(optimizer={"weight_decay": 0.05, "l2sp": {"strength": 0.1, "multipliers": {"stem": 3, "block1": 0}}})
    graph = plan(spec, toy_backbone(), num_classes=3)
    groups = {g["name"]: g for g in build_param_groups(FineTuneModel(toy_backbone(), ToyHead(3)), graph,
                                                        spec.optimizer.no_decay, graph.l2sp)}
    # (l2sp, weight_decay): anchored decay groups swap weight decay for L2-SP; multiplier 0 (block1) and the head
    # keep plain weight decay; no_decay parameters get neither
    expected = {"stem/decay": (0.3, 0.0), "block1/decay": (0.0, 0.05), "block2/decay": (0.1, 0.0),
                "head/decay": (0.0, 0.05)}
    expected |= {name.replace("/decay", "/no_decay"): (0.0, 0.0) for name in expected}
    assert sorted(groups) == sorted(expected)
    for name, (l2sp, decay) in expected.items():
        assert (groups[name]["l2sp"], groups[name]["weight_decay"]) == (pytest.approx(l2sp), decay), name
    opt = FlatOptimizer(list(groups.values()), anchor_dtype=graph.l2sp.dtype)
    apply_stage_settings(opt, graph.stages[1])  # a stage change keeps L2-SP in place of weight decay
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups if g["name"].endswith("/decay")} == {
        "stem/decay": 0.0, "block1/decay": 0.05, "block2/decay": 0.0, "head/decay": 0.05}


def test_without_l2sp_no_group_is_anchored(setup):
    spec, graph, model = setup
    assert graph.l2sp is None
    assert all(g["l2sp"] == 0.0 for g in build_param_groups(model, graph, spec.optimizer.no_decay, graph.l2sp))
