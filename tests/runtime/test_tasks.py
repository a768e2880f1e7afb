"""Multilabel and regression tasks: losses and metrics against torch / scikit-learn / SciPy, threshold choice,
target normalisation, and toy runs (cached stages, export, eval, predict) for each kind."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error
from toy import IN, ToyHead, _collate, toy_backbone, toy_build
from torch.utils.data import Dataset

from ftengine.data import DataBundle
from ftengine.data.targets import TaskInfo, normalised
from ftengine.runtime.metrics import choose_threshold, multilabel_metrics, regression_metrics


def test_multilabel_f1_matches_sklearn():
    g = np.random.default_rng(0)
    y = (g.random((60, 4)) < 0.4).astype(float)
    y[:, 3] = 0  # a label with no positives: F1 0 (zero_division=0), as sklearn
    p = g.random((60, 4))
    m = multilabel_metrics(y, p, list("abcd"), threshold=0.45)
    pred = (p >= 0.45).astype(int)
    assert m["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    per = f1_score(y, pred, average=None, zero_division=0)
    assert [m["per_label"][n]["f1"] for n in "abcd"] == pytest.approx(per.tolist())


def test_regression_metrics_match_sklearn_and_scipy():
    g = np.random.default_rng(1)
    t = np.round(g.normal(size=50), 1)  # rounding makes ties, which Spearman must average
    p = t + g.normal(scale=0.5, size=50)
    p[:5] = p[5]  # ties in the predictions too
    m = regression_metrics(t, p, "y")
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(t, p)))
    assert m["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert m["pearson"] == pytest.approx(pearsonr(t, p).statistic)
    assert m["spearman"] == pytest.approx(spearmanr(t, p).statistic)


def test_losses_match_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 3, generator=g)
    hot = (torch.rand(8, 3, generator=g) > 0.5).float()
    assert TaskInfo("multilabel", "bce").compute_loss(logits, hot) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, hot)))
    out, y = torch.randn(8, 1, generator=g), torch.randn(8, generator=g) * 3 + 10
    task = TaskInfo("regression", "huber", target_mean=10.0, target_std=3.0)
    assert task.compute_loss(out, y) == pytest.approx(float(F.huber_loss(out[:, 0], (y - 10) / 3, delta=1.0)))
    mse = TaskInfo("regression", "mse", target_mean=10.0, target_std=3.0)
    assert mse.compute_loss(out, y) == pytest.approx(float(F.mse_loss(out[:, 0], (y - 10) / 3)))


def test_threshold_is_the_best_micro_f1_on_validation():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[0.3, 0.1], [0.35, 0.32], [0.1, 0.31], [0.2, 0.05]])  # positives all sit in [0.3, 0.35]
    t = choose_threshold(y, p)
    assert t in (0.25, 0.3)  # both separate perfectly; 0.3 is nearer 0.5
    assert t == 0.3 and multilabel_metrics(y, p, ["a", "b"], t)["micro_f1"] == 1.0
    assert multilabel_metrics(y, p, ["a", "b"], 0.5)["micro_f1"] == 0.0


def test_normalisation_round_trip():
    targets = [2.0, 4.0, 9.0, 1.0]
    task = normalised(TaskInfo("regression", "mse"), targets)
    assert task.target_mean == pytest.approx(np.mean(targets)) and task.target_std == pytest.approx(np.std(targets))
    scaled = (torch.tensor(targets) - task.target_mean) / task.target_std
    assert task.outputs(scaled[:, None]).tolist() == pytest.approx(targets, abs=1e-5)
    assert TaskInfo.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    assert normalised(TaskInfo("regression"), [3.0, 3.0]).target_std == 1.0  # constant target: no division by 0


class _Rows(Dataset):
    def __init__(self, x: torch.Tensor, y: list[Any]) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixels": self.x[i], "label": self.y[i], "index": i}


def _task_data(kind: str) -> DataBundle:
    """A learnable toy problem of `kind`: 2 labels from two projections, or a linear target around 50."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(IN, 2, generator=g)
    splits = {}
    for name, n in (("train", 128), ("validation", 48), ("test", 48)):
        x = torch.randn(n, IN, generator=g)
        z = x @ w
        y = (z > 0).float().tolist() if kind == "multilabel" else (50 + 10 * z[:, 0]).tolist()
        splits[name] = _Rows(x, y)
    labels = ["x", "y"] if kind == "multilabel" else ["score"]
    task = TaskInfo("multilabel", "bce") if kind == "multilabel" else \
        normalised(TaskInfo("regression", "mse"), splits["train"].y)
    return DataBundle(kind="toy", modality="image", labels=labels, collate=_collate_any, task=task,
                      fingerprint_parts={"toy": kind}, **splits)


def _collate_any(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    from ftengine.data.targets import label_tensor

    batch = _collate([{**e, "label": 0} for e in examples])
    batch["labels"] = label_tensor([e["label"] for e in examples])
    return batch


@pytest.mark.parametrize("kind, metric", [("multilabel", "val_micro_f1"), ("regression", "val_rmse")])
def test_cached_toy_run_of_each_task(kind, metric, toy_run, monkeypatch):
    import ftengine.runtime.run as run_module

    data = _task_data(kind)
    monkeypatch.setattr(run_module, "build", lambda *a, **k: toy_build(*a, **k, data=data))
    result = toy_run(kind, data={"kind": "image_csv", "task": kind, "labels": None},
                     cache={"enabled": "on", "dtype": "fp32"}, training={"early_stopping": {"metric": metric}})
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r[metric] is not None for r in rows) and "val_accuracy" not in rows[0]
    report = json.loads((result.run_dir / "report.json").read_text())
    head = json.loads((result.run_dir / "model" / "head.json").read_text())
    assert report["task"] == kind and head["task"]["kind"] == kind
    if kind == "multilabel":
        assert report["micro_f1"] > 0.7 and set(report["per_label"]) == {"x", "y"}
        assert head["task"]["threshold"] == report["threshold"]
        assert result.metrics["test_micro_f1"] == pytest.approx(report["micro_f1"])
    else:
        assert head["task"]["target_mean"] == pytest.approx(np.mean(data.train.y), rel=1e-5)
        assert report["pearson"] > 0.5 and report["rmse"] < np.std(data.test.y)  # better than predicting the mean
        assert result.metrics["test_rmse"] == pytest.approx(report["rmse"])
    assert "RMSE" in (result.run_dir / "report.txt").read_text() or "micro F1" in (result.run_dir / "report.txt").read_text()


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
def test_predict_outputs(kind):
    from ftengine.runtime.finished_run import _outputs

    if kind == "multilabel":
        task = TaskInfo("multilabel", "bce", threshold=0.4)
        assert _outputs(task, torch.tensor([0.9, 0.1, 0.45]), ["a", "b", "c"], "|") == \
            {"labels": "a|c", "p_a": 0.9, "p_b": 0.1, "p_c": 0.45}
        assert _outputs(task, torch.tensor([0.9, 0.1, 0.45]), ["a", "b", "c"], None)["labels"] == ["a", "c"]
    else:
        task = TaskInfo("regression", "mse", target_mean=5.0, target_std=2.0)
        value = task.outputs(torch.tensor([[0.5]]))[0]
        assert _outputs(task, value, ["score"], None) == {"prediction": 6.0}


@pytest.mark.slow
def test_regression_example_spec_end_to_end(tmp_path, monkeypatch):
    """specs/text_regression_confidence.yaml on 300 real tweets: its metrics reach report.json and predict works."""
    from toy import REPO_SPECS

    from ftengine.runtime import predict_run
    from ftengine.runtime.run import run_spec

    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))
    result = run_spec(None, REPO_SPECS / "text_regression_confidence.yaml", quiet=True,
                      overrides=["data.limit=300", f"output.dir={tmp_path}", "output.plots=false"])
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["task"] == "regression" and report["target"] == "confidence" and report["num_examples"] > 0
    assert all(np.isfinite(report[k]) for k in ("rmse", "mae", "pearson", "spearman"))
    source = tmp_path / "new.csv"
    source.write_text("text\nI love self-driving cars\nno thanks\n")
    with open(predict_run(result.run_dir, source)) as f:
        rows = list(csv.DictReader(f))
    assert [set(r) for r in rows] == [{"text", "prediction"}] * 2 and all(0 < float(r["prediction"]) < 2 for r in rows)


@pytest.mark.slow
def test_multilabel_example_spec_end_to_end(tmp_path, monkeypatch):
    """specs/image_multilabel_digit_tags.yaml on 300 real digits: micro/macro and per-tag metrics reach report.json.

    (sklearn_digits reads no files, so `predict` has no input for it; the toy runs above cover multilabel predict.)
    """
    from toy import REPO_SPECS

    from ftengine.runtime.run import run_spec

    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FTENGINE_ALLOW_MODULES", "efficientnet_lite_pytorch")  # the spec's documented flag
    result = run_spec(None, REPO_SPECS / "image_multilabel_digit_tags.yaml", quiet=True,
                      overrides=["data.limit=300", "training.epochs=2", f"output.dir={tmp_path}", "output.plots=false"])
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["task"] == "multilabel" and report["num_examples"] > 0
    assert set(report["per_label"]) == {"even", "five_or_more", "prime"}
    assert all(0.0 <= report[k] <= 1.0 for k in ("micro_f1", "macro_f1"))
