"""The quickstart-scale headline: HF's final accuracy is the target, times are first reaches, never-reached runs
report their best; the recipes run on the quickstart's own rows."""

from __future__ import annotations

import pytest

from ftengine.bench.e2e_headline import headline, parse_runs
from ftengine.bench.e2e_recipes import QUICKSTART_SIZES, RECIPES, shipped_spec


def _run(recipe: str, impl: str, accs: list[float], walls: list[float], rss: float = 1000.0) -> dict:
    return {"recipe": recipe, "impl": impl, "repeat": 0, "total_seconds": walls[-1] + 5, "peak_rss_mb": rss,
            "epochs": [{"epoch": i + 1, "val_accuracy": a, "wall": w} for i, (a, w) in enumerate(zip(accs, walls))]}


def test_times_are_first_reaches_of_hfs_final_accuracy() -> None:
    hf = _run("hf_standard", "hf", [0.7680, 0.7674], [140.0, 273.0], rss=1500)  # reached its final at epoch 1
    fast = _run("spec:specs/quickstart.yaml", "ftengine", [0.70, 0.7674, 0.79], [20.0, 35.0, 50.0])
    short = _run("hf_standard", "ftengine", [0.70, 0.75], [80.0, 160.0])
    rows = headline([hf, fast, short])
    assert [r["recipe"] for r in rows] == ["spec:specs/quickstart.yaml", "hf_standard"]
    first, never = rows
    assert first["target"] == 0.7674 and first["hf_seconds_to_target"] == 140.0 and first["hf_epoch"] == 1
    assert first["seconds_to_target"] == 35.0 and first["speedup"] == pytest.approx(4.0)
    assert never["seconds_to_target"] is None and never["speedup"] is None
    assert (never["best_accuracy"], never["best_at_seconds"]) == (0.75, 160.0)
    assert first["hf_peak_rss_mb"] == 1500


def test_runs_start_with_the_hf_baseline() -> None:
    assert parse_runs("hf_standard/hf,spec:specs/quickstart.yaml/ftengine")[1] == ("spec:specs/quickstart.yaml",
                                                                                  "ftengine")
    with pytest.raises(ValueError, match="first being hf_standard/hf"):
        parse_runs("spec:specs/quickstart.yaml/ftengine")


def test_quickstart_scale_uses_the_quickstart_rows(tmp_path) -> None:
    shipped = shipped_spec("spec:specs/quickstart.yaml", threads=2, out_dir=str(tmp_path))
    recipe = RECIPES["hf_standard"].spec(train=QUICKSTART_SIZES[0], validation=QUICKSTART_SIZES[1], threads=2,
                                         out_dir=str(tmp_path))
    for key in ("limit", "split", "train", "max_length"):
        assert recipe["data"][key] == shipped["data"][key]
    assert shipped["cache"]["persist"] is False and shipped["output"]["dir"] == str(tmp_path)
    small = RECIPES["hf_standard"].spec(train=1200, validation=600, threads=2, out_dir=str(tmp_path))
    assert small["data"]["limit"] == 1800 and small["data"]["split"]["test"] == 0.0
