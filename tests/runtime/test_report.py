"""Test-set report files and training-curve plots from metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from ftengine.runtime.metrics import classification_metrics
from ftengine.runtime.report import build_report, format_report, plot_history, read_metrics, write_report

LABELS = ["negative", "neutral", "positive"]


def history(path: Path) -> Path:
    """Rows as the training loop writes them: per-epoch rows over three stages, per-group LRs."""
    rows, step = [], 0
    for index, (stage, epochs) in enumerate([("head", 2), ("upper", 1), ("all", 2)]):
        for epoch in range(epochs):
            step += 50
            rows.append({"stage": stage, "stage_index": index, "epoch": len(rows) + 1, "step": step,
                         "train_loss": math.exp(-step / 200), "val_loss": math.exp(-step / 250) + 0.1,
                         "val_accuracy": 0.5 + step / 1000, "val_macro_f1": 0.45 + step / 1000,
                         "lr": {"head": 1e-3, "encoder.layer.5": 0.0 if index == 0 else 2e-5},
                         "epoch_seconds": 10.0, "samples_per_second": 300.0 if index == 0 else 40.0})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"stage": "all", "ste')  # torn last line
    return path


def test_write_report_json_txt_and_confusion_plot(tmp_path: Path) -> None:
    metrics = classification_metrics([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], LABELS)
    out = write_report(tmp_path, metrics, extra={"checkpoint": "best"})
    saved = json.loads(out["json"].read_text())
    assert saved["split"] == "test" and saved["checkpoint"] == "best"
    assert saved["accuracy"] == pytest.approx(4 / 6) and saved["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    text = out["txt"].read_text()
    assert text.startswith("test set: 6 examples\naccuracy     0.6667\n")
    assert "negative         0.5000  0.5000  0.5000        2" in text  # precision 1/2, recall 1/2
    assert text.splitlines()[-1].split() == ["positive", "1", "0", "2"]  # confusion matrix row of the last class
    with Image.open(out["confusion_matrix"]) as image:
        assert image.size[0] > 300 and image.size[1] > 300


def test_build_report_from_probabilities() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    y = torch.tensor([0, 1, 2, 1])
    report = build_report(y, probs, LABELS)
    assert report["accuracy"] == 0.75
    assert report["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.8) + math.log(0.4) + math.log(0.25)) / 4)
    assert report == {**classification_metrics(y, probs.argmax(1), LABELS), "loss": report["loss"]}


def test_read_metrics_drops_torn_lines_and_resume_duplicates(tmp_path: Path) -> None:
    path = history(tmp_path / "metrics.jsonl")
    rows = read_metrics(path)
    assert len(rows) == 5 and [r["step"] for r in rows] == [50, 100, 150, 200, 250]
    lines = path.read_text().splitlines()[:5]
    path.write_text("\n".join(lines[:3] + lines[2:]) + "\n")  # epoch 3 logged twice (killed after logging, resumed)
    assert [r["step"] for r in read_metrics(path)] == [50, 100, 150, 200, 250]


def test_plot_history_writes_readable_pngs(tmp_path: Path) -> None:
    written = plot_history(history(tmp_path / "metrics.jsonl"), tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "metrics.png", "lr.png", "throughput.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 800


def test_plot_history_skips_empty_panels(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"stage": 0, "epoch": 1, "step": 10, "train_loss": 0.9}) + "\n")
    assert [p.name for p in plot_history(path, tmp_path / "plots")] == ["loss.png"]


def test_format_report_includes_loss_when_given() -> None:
    metrics = {**classification_metrics([0, 1], [0, 1], ["a", "b"]), "loss": 0.25}
    assert "loss         0.2500" in format_report(metrics, title="validation set")
