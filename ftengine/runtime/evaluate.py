"""Evaluation passes: logits for a whole split, then the task's loss and metrics."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ftengine.data.targets import TaskInfo
from ftengine.runtime.metrics import classification_metrics, multilabel_metrics, regression_metrics


Gather = Callable[[tuple[Tensor, Tensor, Tensor, float]], tuple[Tensor, Tensor, Tensor, float]]

HEADLINE = {"classification": ("loss", "accuracy", "macro_f1"), "multilabel": ("loss", "micro_f1", "macro_f1"),
            "regression": ("loss", "rmse", "mae", "pearson", "spearman")}
"""The metrics each task logs per epoch (as `val_<name>`) and reports (as `test_<name>`)."""


@dataclass
class Evaluation:
    """One split's predictions and summary metrics.

    Attributes:
        loss: mean loss per example (classification: unweighted cross-entropy, so it compares across balance
            settings; multilabel: BCE averaged over labels; regression: MSE/Huber on normalised targets).
        probs: classification / multilabel: (N, C) float32 softmax / per-label sigmoid probabilities;
            regression: (N,) predicted values in the target's unit; in the split's example order.
        labels: (N,) int64 class ids, (N, C) float multi-hot rows, or (N,) float targets.
        index: (N,) int64 example ids.
        report: every metric of the task (`ftengine.runtime.metrics`) plus `loss`.
        task: the task kind.
    """

    loss: float
    probs: Tensor
    labels: Tensor
    index: Tensor
    report: dict[str, Any]
    task: str = "classification"

    @property
    def accuracy(self) -> float:
        """Classification accuracy (multilabel: subset accuracy)."""
        return float(self.report.get("accuracy", self.report.get("subset_accuracy", math.nan)))

    @property
    def macro_f1(self) -> float:
        """Macro-F1 over every class / label of the label list."""
        return float(self.report.get("macro_f1", math.nan))

    @property
    def preds(self) -> Tensor:
        """(N,) argmax predictions (classification)."""
        return self.probs.argmax(dim=1)

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        """The task's headline metrics with `prefix`: `val_loss`, `val_accuracy`, `val_macro_f1` (classification),
        `val_micro_f1`, `val_macro_f1` (multilabel), `val_rmse`, `val_mae`, `val_pearson`, `val_spearman` (regression)."""
        return {f"{prefix}{name}": float(self.report[name]) for name in HEADLINE[self.task]}


def metric_names(task: str, prefix: str = "val_") -> list[str]:
    """The names `Evaluation.metrics` returns for `task`."""
    return [f"{prefix}{name}" for name in HEADLINE[task]]


@torch.no_grad()
def evaluate(logits_of: Callable[[dict[str, Any]], Tensor], batches: Iterable[dict[str, Any]], names: list[str],
             *, should_stop: Callable[[], bool] = lambda: False, task: TaskInfo | None = None,
             gather: Gather | None = None) -> Evaluation | None:
    """Run `logits_of` over every batch (model in eval mode is the caller's job) and score it.

    Args:
        logits_of: batch -> (B, C) logits.
        batches: collated batches with `labels` and `index`.
        names: class / label names (C of them; regression: the target column).
        should_stop: polled between batches; when it turns true the pass is abandoned (returns None).
        task: the task (loss, outputs, threshold, normalisation); None: classification.
        gather: a data-parallel rank's shard -> every rank's (outputs, labels, index, loss sum), joined; the
            metrics are then those of the whole split, the same on every rank.
    """
    task = task or TaskInfo()
    outputs, labels, index, loss_sum = [], [], [], 0.0
    for batch in batches:
        if should_stop():
            return None
        logits = logits_of(batch).float()
        targets = batch["labels"].to(logits.device)
        loss_sum += float(task.compute_loss(logits, targets, reduction="sum")) / (
            logits.shape[1] if task.kind == "multilabel" else 1)  # BCE's mean runs over labels too
        outputs.append(task.outputs(logits).cpu())
        labels.append(batch["labels"].cpu())
        index.append(batch["index"].cpu())
    if gather is not None:
        width = len(names) if task.kind != "regression" else 0  # an empty shard still has the outputs' shape
        empty = (torch.zeros(0, width) if width else torch.zeros(0), torch.zeros(0, dtype=torch.long),
                 torch.zeros(0, dtype=torch.long))
        parts = tuple(torch.cat(x) if x else e for x, e in zip((outputs, labels, index), empty))
        p, y, i, loss_sum = gather((*parts, loss_sum))
        if not len(i):
            return None
    elif not outputs:
        return None
    else:
        p, y, i = torch.cat(outputs), torch.cat(labels), torch.cat(index)
    order = torch.argsort(i)  # eval batches come longest-first; report in the split's own order
    p, y, i = p[order], y[order], i[order]
    if task.kind == "multilabel":
        report = multilabel_metrics(y, p, names, task.threshold)
    elif task.kind == "regression":
        report = regression_metrics(y, p, names[0] if names else "target")
    else:
        report = classification_metrics(y, p.argmax(dim=1), names)
    report["loss"] = loss_sum / len(y)
    return Evaluation(loss=report["loss"], probs=p, labels=y, index=i, report=report, task=task.kind)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16/fp16 on an accelerator; nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
