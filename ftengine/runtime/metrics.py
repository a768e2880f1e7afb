"""Classification metrics from a confusion matrix: accuracy, macro-F1, per-class precision/recall/F1.

Conventions follow scikit-learn's ``precision_recall_fscore_support`` with ``zero_division=0``: a class that
is never predicted has precision 0, a class with no examples has recall 0, and the F1 of a class with
neither is 0. Macro averages weigh every class in the label list equally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[int]


def _as_long(values: ArrayLike) -> Tensor:
    return torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values).long().flatten().cpu()


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> Tensor:
    """Counts ``cm[t, p]`` of examples with true class ``t`` predicted as ``p`` (rows: truth, columns: prediction).

    Examples with a negative true label (unlabelled) are left out.
    """
    t, p = _as_long(y_true), _as_long(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.numel()} vs {p.numel()})")
    keep = t >= 0
    if ((t[keep] >= num_classes) | (p[keep] < 0) | (p[keep] >= num_classes)).any():
        raise ValueError(f"class ids must lie in 0..{num_classes - 1}")
    flat = torch.bincount(t[keep] * num_classes + p[keep], minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def metrics_from_confusion(cm: Tensor | np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Every report metric from a confusion matrix.

    Returns:
        ``num_examples``, ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1``, ``weighted_f1``,
        ``per_class`` (``{label: {precision, recall, f1, support}}``), ``labels`` and ``confusion_matrix``
        (nested lists, rows = true class).
    """
    m = np.asarray(cm.cpu() if isinstance(cm, Tensor) else cm, dtype=np.int64)
    tp = np.diag(m).astype(np.float64)
    support, predicted = m.sum(axis=1).astype(np.float64), m.sum(axis=0).astype(np.float64)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)  # = 2PR/(P+R), and 0 where both are 0
    total = int(m.sum())
    return {
        "num_examples": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()) if len(tp) else 0.0,
        "macro_recall": float(recall.mean()) if len(tp) else 0.0,
        "macro_f1": float(f1.mean()) if len(tp) else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": m.tolist(),
    }


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str]) -> dict[str, Any]:
    """Report metrics for class ids ``y_pred`` against ``y_true`` (see :func:`metrics_from_confusion`)."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)


class ClassificationMeter:
    """Accumulates a confusion matrix (and the mean loss) over evaluation batches.

    Example:
        >>> meter = ClassificationMeter(labels)
        >>> for batch in loader:
        ...     logits = model(batch); meter.update(logits, batch["labels"], loss=F.cross_entropy(logits, batch["labels"]))
        >>> meter.compute()["macro_f1"]
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        n = len(self.labels)
        self.cm = torch.zeros(n, n, dtype=torch.long)
        self.loss_sum, self.loss_count = 0.0, 0

    def update(self, logits: Tensor, labels: Tensor, loss: Tensor | float | None = None) -> None:
        """Add a batch.

        Args:
            logits: (B, num_classes) scores (or (B,) predicted class ids).
            labels: (B,) true class ids (negative: unlabelled, left out).
            loss: the batch's mean loss (weighted by the batch size in the average).
        """
        preds = logits.argmax(dim=-1) if logits.dim() == 2 else logits
        self.cm += confusion_matrix(labels.detach(), preds.detach(), len(self.labels))
        if loss is not None:
            n = int((labels >= 0).sum())
            self.loss_sum += float(loss) * n
            self.loss_count += n

    def compute(self) -> dict[str, Any]:
        """Metrics so far, plus ``loss`` (mean per example) when losses were given."""
        out = metrics_from_confusion(self.cm, self.labels)
        if self.loss_count:
            out["loss"] = self.loss_sum / self.loss_count
        return out


def multilabel_metrics(y_true: Tensor | np.ndarray, probs: Tensor | np.ndarray, labels: Sequence[str],
                       threshold: float = 0.5) -> dict[str, Any]:
    """Multilabel report metrics: a label is predicted where its probability reaches ``threshold``.

    Conventions of scikit-learn's ``f1_score`` (``average="micro"`` / ``"macro"`` / ``None``, ``zero_division=0``):
    micro-F1 pools every (example, label) decision; macro-F1 weighs every label equally.

    Args:
        y_true: (N, C) 0/1 targets.
        probs: (N, C) per-label probabilities.
        labels: the C label names.
        threshold: the decision threshold.

    Returns:
        ``task``, ``num_examples``, ``threshold``, ``micro_precision``, ``micro_recall``, ``micro_f1``, ``macro_f1``,
        ``subset_accuracy`` (every label of a row right), ``per_label`` (``{label: {precision, recall, f1, support}}``)
        and ``labels``.
    """
    t = np.asarray(y_true, dtype=np.float64) > 0.5
    p = np.asarray(probs, dtype=np.float64) >= threshold
    tp, fp, fn = (t & p).sum(0).astype(np.float64), (~t & p).sum(0).astype(np.float64), (t & ~p).sum(0).astype(np.float64)
    precision, recall, f1 = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn), _safe_div(2 * tp, 2 * tp + fp + fn)
    micro = lambda num, den: float(num / den) if den else 0.0  # noqa: E731 - three one-line ratios
    return {
        "task": "multilabel", "num_examples": int(t.shape[0]), "threshold": float(threshold),
        "micro_precision": micro(tp.sum(), tp.sum() + fp.sum()), "micro_recall": micro(tp.sum(), tp.sum() + fn.sum()),
        "micro_f1": micro(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "subset_accuracy": float((t == p).all(axis=1).mean()) if len(t) else 0.0,
        "per_label": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(t[:, i].sum())} for i, name in enumerate(labels)},
        "labels": list(labels),
    }


THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Candidate multilabel thresholds: 0.05, 0.10, ..., 0.95."""


def choose_threshold(y_true: Tensor | np.ndarray, probs: Tensor | np.ndarray) -> float:
    """The threshold of :data:`THRESHOLDS` with the best micro-F1 on these (validation) examples.

    Ties go to the candidate nearest 0.5, so a flat curve keeps the neutral choice.
    """
    labels = [str(i) for i in range(np.asarray(probs).shape[1])]
    scored = [(multilabel_metrics(y_true, probs, labels, t)["micro_f1"], -abs(t - 0.5), t) for t in THRESHOLDS]
    return max(scored)[2]


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = (first + (counts + 1) / 2.0)[group]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def regression_metrics(y_true: Tensor | np.ndarray, y_pred: Tensor | np.ndarray, target: str) -> dict[str, Any]:
    """RMSE, MAE, Pearson's r and Spearman's rho of predictions against targets (rows with a NaN target left out).

    A correlation with a constant side is undefined; it is reported as 0 (no linear/monotone relation shown).

    Returns:
        ``task``, ``num_examples``, ``target``, ``rmse``, ``mae``, ``pearson``, ``spearman``.
    """
    t, p = np.asarray(y_true, dtype=np.float64).ravel(), np.asarray(y_pred, dtype=np.float64).ravel()
    keep = np.isfinite(t)
    t, p = t[keep], p[keep]
    err = p - t
    n = len(t)
    return {"task": "regression", "num_examples": int(n), "target": target,
            "rmse": float(np.sqrt((err ** 2).mean())) if n else 0.0, "mae": float(np.abs(err).mean()) if n else 0.0,
            "pearson": _pearson(t, p) if n > 1 else 0.0,
            "spearman": _pearson(_ranks(t), _ranks(p)) if n > 1 else 0.0}
