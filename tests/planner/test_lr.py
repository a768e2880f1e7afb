"""Per-group learning rates, computed by hand from the formula in ftengine/planner/plan.py."""

from __future__ import annotations

import pytest
from planner_fakes import FakeBackbone, make_spec

from ftengine.planner import plan


def test_layerwise_decay_lr_scale_and_multipliers(bert: FakeBackbone) -> None:
    spec = make_spec(
        optimizer={"lr": 1e-4, "head_lr": 1e-3},
        freeze={"layerwise_lr_decay": 0.5, "stages": [
            {"trainable": ["head"]},
            {"trainable": ["all"], "lr_scale": 0.1,
             "lr_multipliers": {"encoder.layer.4-5": 2.0, "encoder.layer.5": 3.0, "head": 0.5}},
        ]},
    )
    stage = plan(spec, bert).stages[1]
    lr = {g.name: g.lr for g in stage.groups}
    # depth counts down from the top *used* group: encoder.layer.5 (the pooler is unused under mean pooling)
    assert lr["encoder.layer.5"] == pytest.approx(1e-4 * 0.5**0 * 0.1 * 2.0 * 3.0)  # 6e-5: both multipliers
    assert lr["encoder.layer.4"] == pytest.approx(1e-4 * 0.5**1 * 0.1 * 2.0)        # 1e-5
    assert lr["encoder.layer.3"] == pytest.approx(1e-4 * 0.5**2 * 0.1)              # 2.5e-6
    assert lr["encoder.layer.0"] == pytest.approx(1e-4 * 0.5**5 * 0.1)
    assert lr["embeddings"] == pytest.approx(1e-4 * 0.5**6 * 0.1)                   # 1.5625e-7
    assert lr["head"] == pytest.approx(1e-3 * 0.1 * 0.5)                            # head: never decayed
    assert lr["pooler"] == 0.0 and not stage.group("pooler").trainable


def test_frozen_groups_keep_their_lr_and_head_lr_defaults_to_lr(bert: FakeBackbone) -> None:
    spec = make_spec(optimizer={"lr": 2e-5, "weight_decay": 0.05},
                     freeze={"preset": "feature_extraction", "layerwise_lr_decay": 0.9})
    stage = plan(spec, bert).stages[0]
    assert stage.group("head").lr == pytest.approx(2e-5)
    assert stage.group("encoder.layer.4").lr == pytest.approx(2e-5 * 0.9)
    assert stage.group("encoder.layer.4").trainable is False
    assert {g.weight_decay for g in stage.groups if g.name != "pooler"} == {0.05}


def test_pooler_pooling_makes_the_pooler_the_top_group(bert: FakeBackbone) -> None:
    spec = make_spec(head={"pooling": "pooler"}, optimizer={"lr": 1e-4},
                     freeze={"preset": "full_finetune", "layerwise_lr_decay": 0.5})
    stage = plan(spec, bert).stages[0]
    assert stage.group("pooler").lr == pytest.approx(1e-4)
    assert stage.group("encoder.layer.5").lr == pytest.approx(5e-5)


def test_presets_scale_later_stages(resnet: FakeBackbone) -> None:
    from planner_fakes import image_spec

    spec = image_spec(head={"num_classes": 4}, optimizer={"lr": 0.01, "head_lr": 0.1},
                      freeze={"preset": "gradual_unfreeze", "unfrozen_lr_scale": 0.5, "layerwise_lr_decay": 0.8})
    graph = plan(spec, resnet)
    assert graph.stages[0].group("head").lr == pytest.approx(0.1)  # the head-only stage is not scaled
    last = graph.stages[-1]
    assert last.group("head").lr == pytest.approx(0.1 * 0.5)
    assert last.group("layer4").lr == pytest.approx(0.01 * 0.5)
    assert last.group("stem").lr == pytest.approx(0.01 * 0.8**4 * 0.5)
