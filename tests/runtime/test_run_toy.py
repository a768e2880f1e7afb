"""End-to-end runs of the real runtime on the toy model: outputs, stages, caching, early stopping."""

from __future__ import annotations

import json

import pytest


def test_toy_run_writes_the_run_directory(toy_run, monkeypatch):
    import ftengine.runtime.run as run_module

    monkeypatch.setattr(run_module, "write_report", lambda *a, **k: None)
    result = toy_run()
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["head", "head", "top", "top"]
    assert set(rows[0]["lr"]) == {"head"} and set(rows[-1]["lr"]) == {"head", "block2"}
    for name in ("spec.resolved.yaml", "plan.json", "labels.json", "run.json", "model/model.safetensors",
                 "model/head.json", "checkpoints/last/checkpoint.pt", "checkpoints/best/checkpoint.pt"):
        assert (result.run_dir / name).is_file(), name
    assert result.metrics["val_accuracy"] is not None
