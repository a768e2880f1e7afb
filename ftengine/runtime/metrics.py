"""Classification metrics from a confusion matrix: accuracy, macro-F1, per-class precision/recall/F1.

Conventions follow scikit-learn's ``precision_recall_fscore_support`` with ``zero_division=0``: a class that
is never predicted has precision 0, a class with no examples has recall 0, and the F1 of a class with
neither is 0. Macro averages weigh every class in the label list equally.
"""

from __future__ import annotations

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
