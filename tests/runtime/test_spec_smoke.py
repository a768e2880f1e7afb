"""Every example spec in specs/ runs end to end on a small subset: one epoch per stage, all outputs written.

The ResNet-18 spec runs with `backbone.weights=null` (random initialisation): torchvision's ImageNet weights
cannot be downloaded offline, so its accuracy here says nothing about the recipe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ftengine.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def smoke_overrides(path: Path) -> list[str]:
    """Overrides that shrink a spec to seconds: few examples, one epoch per stage, small batches."""
    spec = load_spec(path)
    out = ["training.batch_size=16", "training.eval_batch_size=32"]
    out.append({"sklearn_digits": "data.limit=200", "text": "data.limit=90"}.get(spec.data.kind, "data.limit=100"))
    if spec.data.kind in ("image_folder", "image_csv"):
        out.append("data.image_size=32")
    if spec.freeze.stages:
        out += [f"freeze.stages.{i}.epochs=1" for i in range(len(spec.freeze.stages))]
    else:
        out += ["training.epochs=1", "freeze.head_epochs=1", "freeze.stage_epochs=1"]
    if spec.backbone.kind == "torchvision":
        out.append("backbone.weights=null")  # no ImageNet weights offline: random init, said in the spec too
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_FILES)
def test_example_spec_runs(name, tmp_path, monkeypatch):
    from ftengine.runtime import run_spec

    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))
    path = SPECS / name
    factory = getattr(load_spec(path).backbone, "factory", None)
    if factory:  # the documented way to allow a spec's module factory (README: "--allow-module PKG")
        monkeypatch.setenv("FTENGINE_ALLOW_MODULES", factory.split(":")[0].split(".")[0])
    overrides = [*smoke_overrides(path), f"output.dir={tmp_path}", f"output.plots={name == 'quickstart.yaml'}"]
    spec = load_spec(path, overrides)
    result = run_spec(spec, path, quiet=True)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [s.name or f"stage{i}" for i, s in enumerate(spec.freeze.stages)] \
        if spec.freeze.stages else len(rows) >= 1
    watched = spec.training.early_stopping.metric
    for row in rows:
        assert row["train_loss"] > 0 and math.isfinite(row[watched])
        if getattr(spec.data, "task", "classification") == "classification":
            assert 0.0 <= row["val_accuracy"] <= 1.0
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    if spec.backbone.kind == "hf":
        assert (result.run_dir / "model" / "backbone" / "config.json").is_file()
    if result.metrics.get("test_accuracy") is not None:
        assert json.loads((result.run_dir / "report.json").read_text())["split"] == "test"
    if name == "quickstart.yaml":
        assert {p.name for p in (result.run_dir / "plots").iterdir()} >= {"loss.png", "metrics.png"}
