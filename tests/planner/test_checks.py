"""Registered plan checks: the exact text of the important errors, all reported at once, and notes."""

from __future__ import annotations

import pytest
from planner_fakes import FakeBackbone, FakeGroup, fake_resnet, make_spec

from ftengine.errors import PlanError
from ftengine.planner import CHECKS, plan


def problems(spec, backbone, **kw) -> list[str]:
    with pytest.raises(PlanError) as err:
        plan(spec, backbone, **kw)
    assert err.value.exit_code == 2
    return err.value.problems


def stages(*items: dict) -> dict:
    return {"stages": list(items)}


def test_unknown_group_with_did_you_mean(bert: FakeBackbone) -> None:
    spec = make_spec(freeze=stages({"trainable": ["head"]}, {"trainable": ["head", "encoder.layer.7"]}))
    assert problems(spec, bert) == [
        "freeze.stages[1].trainable: no layer group 'encoder.layer.7' (backbone has encoder.layer.0 .. "
        "encoder.layer.5); did you mean 'encoder.layer.5'?"]


def test_a_misspelt_family_suggests_the_same_numbers_on_the_real_one(bert: FakeBackbone) -> None:
    spec = make_spec(freeze=stages({"trainable": ["head"]}, {"trainable": ["head", "encoder.layers.3-5", "h.4"]}))
    assert problems(spec, bert) == [
        "freeze.stages[1].trainable: no layer group 'encoder.layers.3-5' (groups: embeddings, encoder.layer.0 .. "
        "encoder.layer.5, pooler, head); did you mean 'encoder.layer.3-5'?",
        "freeze.stages[1].trainable: no layer group 'h.4' (groups: embeddings, encoder.layer.0 .. encoder.layer.5, "
        "pooler, head); use a group name, a range like 'encoder.layer.4-5', a glob, 're:...', all, backbone or head"]


def test_every_problem_is_reported_at_once(bert: FakeBackbone) -> None:
    spec = make_spec(
        head={"num_classes": 4},
        freeze=stages(
            {"name": "a", "trainable": ["head", "encoder.layer.4-9"], "patience": 2},
            {"name": "a", "trainable": ["encoder.*"], "lr_multipliers": {"encodr.layer.5": 2.0}},
            {"trainable": ["pooler"]},
        ),
    )
    assert problems(spec, bert) == [
        "freeze.stages[0].trainable: range 'encoder.layer.4-9' reaches past the backbone: no encoder.layer.6, "
        "encoder.layer.7, encoder.layer.8 (+1 more) (backbone has encoder.layer.0 .. encoder.layer.5); "
        "did you mean 'encoder.layer.4-5'?",
        "freeze.stages[1].lr_multipliers['encodr.layer.5']: no layer group 'encodr.layer.5' (groups: embeddings, "
        "encoder.layer.0 .. encoder.layer.5, pooler, head); did you mean 'encoder.layer.5'?",
        "freeze.stages[2].trainable: group 'pooler' gets no gradient: the head pools with 'mean' and never reads it "
        "(got 'pooler'); drop it, or set head.pooling: pooler",
        "freeze.stages[1].name: stage 0 already has this name (got 'a'); give each stage its own name "
        "(logs and checkpoints use it)",
        "freeze.stages[0].patience: only until_plateau stages use patience (got patience 2 with until_plateau "
        "false); set until_plateau: true or drop patience",
        "head.num_classes: data.labels lists 3 classes (got 4); drop head.num_classes or make it 3",
    ]


def test_stage_that_trains_nothing() -> None:
    # A backbone whose only selectable groups are all unused is contrived; an empty regex match is not:
    backbone = FakeBackbone([FakeGroup("embeddings", ("e",), 5), FakeGroup("pooler", ("p",), 5)],
                            modality="text", family="encoder", feature_dim=4)
    spec = make_spec(freeze=stages({"trainable": ["re:pool.*"]}))
    assert problems(spec, backbone) == [
        "freeze.stages[0].trainable: the stage trains nothing (got ['re:pool.*']); name at least one group that "
        "receives gradients, e.g. head"]


def test_until_plateau_needs_validation_data(bert: FakeBackbone) -> None:
    spec = make_spec(data={"kind": "text", "train": "t.csv", "split": {"validation": 0.0}},
                     freeze=stages({"trainable": ["head"], "until_plateau": True}))
    assert problems(spec, bert) == [
        "freeze.stages[0].until_plateau: a plateau needs validation data (got data.split.validation 0 and no "
        "data.validation file); set data.split.validation, e.g. 0.1, or end the stage by epochs"]
    ok = make_spec(data={"kind": "text", "train": "t.csv", "validation": "v.csv", "split": {"validation": 0.0}},
                   freeze=stages({"trainable": ["head"], "until_plateau": True}))
    assert plan(ok, bert).stages[0].until_plateau


def test_class_count_against_loaded_data(bert: FakeBackbone) -> None:
    spec = make_spec(head={"num_classes": 3}, data={"kind": "text", "train": "t.csv"})
    assert plan(spec, bert, num_classes=3).num_classes == 3
    assert problems(spec, bert, num_classes=5) == [
        "head.num_classes: the training data has 5 labels (got 3); drop head.num_classes (it defaults to the "
        "labels found) or fix the data"]
    unknown = make_spec(data={"kind": "text", "train": "t.csv"})
    graph = plan(unknown, bert)
    assert graph.num_classes is None and graph.groups[-1].num_params is None
    assert graph.stages[0].trainable_params is None and graph.total_params is None
    assert plan(unknown, bert, num_classes=7).groups[-1].num_params == 8 * 7 + 7


def test_digits_have_ten_classes(resnet: FakeBackbone) -> None:
    from planner_fakes import image_spec

    spec = image_spec(data={"kind": "sklearn_digits"}, head={"num_classes": 9})
    assert problems(spec, resnet) == [
        "head.num_classes: sklearn_digits has 10 classes (got 9); drop head.num_classes or make it 10"]


def test_pooling_must_fit_the_backbone(resnet: FakeBackbone, bert: FakeBackbone) -> None:
    from planner_fakes import image_spec

    # the heads package's modality rule, reported at plan time
    assert problems(image_spec(head={"pooling": "cls", "num_classes": 2}), resnet) == [
        "head.pooling: 'cls' does not apply to a image backbone (got 'cls'); use auto (avg) or one of avg, max"]
    bert.groups = bert.groups[:-1]  # a BERT-style encoder without a pooler
    assert problems(make_spec(head={"pooling": "pooler"}), bert) == [
        "head.pooling: this backbone has no pooler group (got 'pooler'; groups embeddings, encoder.layer.0 .. "
        "encoder.layer.5); use auto (mean for this backbone)"]


def test_reserved_group_names() -> None:
    backbone = fake_resnet()
    backbone.groups = [*backbone.groups[:-1], FakeGroup("head", ("fc.weight",), 5)]
    spec = make_spec(backbone={"kind": "module", "factory": "m:f"}, data={"kind": "sklearn_digits"})
    assert problems(spec, backbone)[0] == (
        "backbone: layer group name 'head' is reserved for selectors (got groups stem, layer1 .. layer3, head); "
        "rename the group in the backbone adapter")


def test_checks_are_a_registry() -> None:
    names = [fn.__name__ for fn in CHECKS]
    assert {"stage_selectors", "stage_trains_something", "class_count", "cache_on_means_cached"} <= set(names)


def test_notes_refreeze_multipliers_repeats_and_unused_settings(bert: FakeBackbone) -> None:
    spec = make_spec(
        training={"epochs": 5},
        freeze=stages(
            {"name": "top", "trainable": ["head", "encoder.layer.5"]},
            {"name": "refit", "trainable": ["head"], "lr_multipliers": {"encoder.layer.5": 0.5}},
            {"name": "refit2", "trainable": ["head"], "lr_multipliers": {"encoder.layer.5": 0.5}},
        ),
    )
    graph = plan(spec, bert)
    assert graph.warnings == (
        "pooler never trains: the head pools with 'mean' and never reads it (set head.pooling: pooler to use it)",
        "stage 1 (refit) freezes encoder.layer.5 again after stage 0 trained them; fine for a refit of the upper "
        "layers, otherwise check the stages",
        "stage 2 (refit2) freezes encoder.layer.5 again after stage 0 trained them; fine for a refit of the upper "
        "layers, otherwise check the stages",
        "freeze.stages[1].lr_multipliers['encoder.layer.5'] matches only groups frozen in this stage "
        "(encoder.layer.5); it has no effect here",
        "freeze.stages[2].lr_multipliers['encoder.layer.5'] matches only groups frozen in this stage "
        "(encoder.layer.5); it has no effect here",
        "stages 1 and 2 train the same groups at the same learning rates (each restarts the LR schedule); "
        "merge them unless that is intended",
    )
    preset = plan(make_spec(training={"epochs": 5}, freeze={"preset": "head_then_full"}), bert)
    assert ("training.epochs (5) is not used by preset head_then_full: stage lengths come from freeze.head_epochs (1) "
            "and freeze.stage_epochs (1)") in preset.warnings
