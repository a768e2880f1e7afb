"""ExecutionGraph: to_dict (JSON), parameter lookup, describe() table."""

from __future__ import annotations

import dataclasses
import json

import pytest
from planner_fakes import FakeBackbone, make_spec

from ftengine.planner import plan
from ftengine.planner.describe import describe

SPEC = {"optimizer": {"lr": 1e-4, "head_lr": 1e-3},
        "freeze": {"preset": "gradual_unfreeze", "groups_per_stage": 3, "layerwise_lr_decay": 0.5}}


def test_to_dict_is_json_and_complete(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**SPEC), bert)
    data = json.loads(json.dumps(graph.to_dict()))
    assert data["version"] == 1
    assert [g["name"] for g in data["groups"]] == list(graph.group_names)
    assert data["groups"][0]["param_names"] == ["embeddings.word_embeddings.weight"]
    assert data["cache_boundaries"] == [1, 4, 8]
    stage = data["stages"][1]
    assert stage["name"] == "top3" and stage["frozen_prefix"] == 4
    assert stage["groups"][-1] == {"name": "head", "trainable": True, "lr": 1e-3, "weight_decay": 0.01}
    assert stage["cache"] == {"boundary": 4, "allowed": True, "bytes_per_example": 128 * 8 * 4,
                              "reason": "the frozen prefix runs in eval mode on unaugmented inputs: same output every epoch"}


def test_cache_settings_are_part_of_the_plan(bert: FakeBackbone) -> None:
    """plan.json records the settings the activation cache is built from (it reads nothing else)."""
    cache = {"dtype": "bf16", "tier": "disk", "budget_mb": 64, "dir": "cache-here", "persist": False}
    data = json.loads(json.dumps(plan(make_spec(**SPEC, cache=cache), bert).to_dict()))
    assert data["cache"] == {"enabled": "auto", **cache, "fill_precision": "auto"}  # bf16 only where native
    assert (data["cache_dtype"], data["cache_budget_mb"]) == ("bf16", 64)


def test_graph_is_frozen_and_planning_is_pure(bert: FakeBackbone) -> None:
    before = list(bert.groups)
    graph = plan(make_spec(**SPEC), bert)
    assert bert.groups == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.stages[0].name = "x"  # type: ignore[misc]
    assert plan(make_spec(**SPEC), bert) == graph


def test_group_of_parameter_names(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**SPEC), bert)
    assert graph.group_of("encoder.layer.3.attention.self.query.weight") == "encoder.layer.3"
    assert graph.group_of("backbone.pooler.dense.bias") == "pooler"
    assert graph.group_of("head.linear.weight") == "head"
    with pytest.raises(KeyError):
        graph.group_of("backbone.nothing.weight")


def test_describe_shows_stages_ranges_lrs_and_cache(bert: FakeBackbone) -> None:
    text = describe(plan(make_spec(**SPEC), bert))
    lines = text.splitlines()
    assert lines[0] == "backbone: hf encoder 'some/model', 8 groups (embeddings, encoder.layer.0 .. encoder.layer.5, pooler)"
    assert lines[1] == "head: 27 params (3 classes)"
    table = lines[3:8]
    assert table[0].split() == ["stage", "name", "epochs", "trainable", "params", "trainable", "/", "total", "cache"]
    assert table[2].split() == ["1", "top3", "1", "encoder.layer.3-5,", "head", "327", "/", "1,637", "(20.0%)", "yes"]
    assert table[4].split()[:4] == ["3", "all", "1", "all"]
    lr_rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and "e-0" in line}
    assert lr_rows["head"] == ["1.00e-03"] * 4
    assert lr_rows["encoder.layer.5"] == ["-", "1.00e-04", "1.00e-04", "1.00e-04"]
    assert lr_rows["encoder.layer.2"] == ["-", "-", "1.25e-05", "1.25e-05"]  # 1e-4 * 0.5**3
    assert "  stage 0: cached after pooler (boundary 8), up to 4.0 KiB/example fp32 at 128 tokens; the 2048 MiB " \
           "budget holds 524,288 examples" in lines
    assert "  stage 3: nothing to cache (no frozen prefix: the first group (embeddings) trains)" in lines
    assert lines[-1].startswith("  - pooler never trains")


def test_describe_merges_identical_lr_rows(resnet: FakeBackbone) -> None:
    from planner_fakes import image_spec

    text = describe(plan(image_spec(freeze={"preset": "full_finetune"}, head={"num_classes": 2}), resnet))
    assert "  stem, layer1-4  2.00e-05" in text.splitlines()


def test_describe_without_known_classes(bert: FakeBackbone) -> None:
    text = describe(plan(make_spec(data={"kind": "text", "train": "t.csv"}, freeze={"preset": "head_then_full"}),
                             bert))
    assert "head: ? params (classes from the training labels)" in text
    rows = [line.split("  ") for line in text.splitlines()[3:6]]
    assert [[cell.strip() for cell in row if cell.strip()][4] for row in rows[1:]] == [
        "head / 1,610 + head", "1,600 + head / 1,610 + head"]


@pytest.mark.parametrize("head", [{"kind": "linear"}, {"kind": "mlp", "hidden": [16, 12], "activation": "relu"}])
def test_head_size_matches_the_built_head(bert: FakeBackbone, head: dict) -> None:
    from ftengine.heads import build_head

    spec = make_spec(head=head, freeze={"preset": "feature_extraction"})
    graph = plan(spec, bert)
    module = build_head(spec.head, bert, 3)
    assert graph.groups[-1].num_params == sum(p.numel() for p in module.parameters())
    assert graph.stages[0].trainable_params == graph.groups[-1].num_params
