"""The e2e bench's shared pieces: the baselines' schedule matches ftengine's, and the summary's arithmetic."""

from __future__ import annotations

import pytest

from ftengine.bench.e2e import summarize
from ftengine.bench.e2e_recipes import RECIPES, stage_factor
from ftengine.runtime.schedule import Schedule
from ftengine.spec.training import ScheduleSpec


@pytest.mark.parametrize("total", [1, 7, 25, 38])
def test_baseline_schedule_matches_ftengine_linear(total: int) -> None:
    reference = Schedule(ScheduleSpec(kind="linear", warmup_ratio=0.1, per_stage=True), [total, total])
    assert [stage_factor(t, total, 0.1) for t in range(total)] == pytest.approx(
        [reference.factor(1, t) for t in range(total)])


def test_recipe_spec_matches_recipe() -> None:
    spec = RECIPES["gradual_unfreeze"].spec(train=800, validation=400, threads=2, out_dir="runs")
    assert [s["trainable"] for s in spec["freeze"]["stages"]] == [["head"], ["head", "encoder.layer.5"]]
    assert spec["data"]["limit"] == 1200 and spec["data"]["split"]["validation"] == pytest.approx(1 / 3)


def _run(impl: str, accs: list[float], walls: list[float]) -> dict:
    epochs = [{"train_seconds": 1.0, "val_accuracy": a, "wall": w} for a, w in zip(accs, walls, strict=True)]
    return {"impl": impl, "recipe": "r", "repeat": 0, "epochs": epochs, "total_seconds": walls[-1], "peak_rss_mb": 1.0}


def test_time_to_target_is_first_epoch_at_lowest_final_accuracy() -> None:
    runs = [_run("ftengine", [0.60, 0.70], [10.0, 12.0]), _run("hf", [0.50, 0.65], [40.0, 80.0])]
    summary = summarize(runs, None)["r"]
    assert runs[0]["target"] == 0.65  # the lower final accuracy of the two
    assert summary["ftengine"]["time_to_target"]["median"] == 12.0
    assert summary["hf"]["time_to_target"]["median"] == 80.0
    assert summary["hf"]["ftengine_speedup_time_to_target"]["median"] == pytest.approx(80.0 / 12.0)


def test_target_never_reached_has_no_time() -> None:
    runs = [_run("ftengine", [0.4], [5.0]), _run("plain", [0.6], [9.0])]
    summary = summarize(runs, 0.55)["r"]
    assert "time_to_target" not in summary["ftengine"] and summary["plain"]["time_to_target"]["median"] == 9.0


def _tiny_classifier():
    transformers = pytest.importorskip("transformers")
    from ftengine.bench.e2e_baselines import MeanPoolClassifier

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=6, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    return MeanPoolClassifier(transformers.BertModel(config), 3)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_baselines_train_each_stage_the_parameters_its_groups_name(name: str) -> None:
    from ftengine.bench.e2e_baselines import _groups

    model = _tiny_classifier()
    layers = model.encoder.encoder.layer

    def expected(group: str) -> set[int]:  # from the module tree, not from names
        module = {"head": model.classifier, "all": model.encoder}.get(group) or layers[int(group.split(".")[1])]
        return {id(p) for p in module.parameters()}

    groups = _groups(model, RECIPES[name])
    for stage in RECIPES[name].stages:
        chosen = {id(p) for g in groups if g["group"] in stage.trainable for p in g["params"]}
        assert chosen == set().union(*(expected(g) for g in stage.trainable)), stage.trainable


def test_baseline_group_that_selects_nothing_is_an_error() -> None:
    from ftengine.bench.e2e_baselines import _select

    with pytest.raises(ValueError, match="'layer.9' selects no parameter"):
        _select(_tiny_classifier(), "layer.9")
