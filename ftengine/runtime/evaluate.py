"""Evaluation passes: logits for a whole split, then loss, accuracy and macro-F1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ftengine.runtime.metrics import classification_metrics


@dataclass
class Evaluation:
    """One split's predictions and summary metrics.

    Attributes:
        loss: mean cross-entropy (unweighted, so it compares across balance settings).
        accuracy: fraction of correct argmax predictions.
        macro_f1: unweighted mean of per-class F1 over every class of the label list.
        probs: (N, C) float32 softmax probabilities, in the split's example order.
        labels: (N,) int64 true labels.
        index: (N,) int64 example ids.
        report: every classification metric (`ftengine.runtime.metrics.metrics_from_confusion`) plus `loss`.
    """

    loss: float
    accuracy: float
    macro_f1: float
    probs: Tensor
    labels: Tensor
    index: Tensor
    report: dict[str, Any]

    @property
    def preds(self) -> Tensor:
        """(N,) argmax predictions."""
        return self.probs.argmax(dim=1)

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        """`{prefix}loss`, `{prefix}accuracy`, `{prefix}macro_f1`."""
        return {f"{prefix}loss": self.loss, f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}


@torch.no_grad()
def evaluate(logits_of: Callable[[dict[str, Any]], Tensor], batches: Iterable[dict[str, Any]], names: list[str],
             *, should_stop: Callable[[], bool] = lambda: False) -> Evaluation | None:
    """Run `logits_of` over every batch (model in eval mode is the caller's job) and score it.

    Args:
        logits_of: batch -> (B, C) logits.
        batches: collated batches with `labels` and `index`.
        names: class names (C of them).
        should_stop: polled between batches; when it turns true the pass is abandoned (returns None).
    """
    probs, labels, index, loss_sum = [], [], [], 0.0
    for batch in batches:
        if should_stop():
            return None
        logits = logits_of(batch).float()
        loss_sum += float(F.cross_entropy(logits, batch["labels"].to(logits.device), reduction="sum"))
        probs.append(F.softmax(logits, dim=1).cpu())
        labels.append(batch["labels"].cpu())
        index.append(batch["index"].cpu())
    if not probs:
        return None
    p, y, i = torch.cat(probs), torch.cat(labels), torch.cat(index)
    order = torch.argsort(i)  # eval batches come longest-first; report in the split's own order
    p, y, i = p[order], y[order], i[order]
    report = {**classification_metrics(y, p.argmax(dim=1), names), "loss": loss_sum / len(y)}
    return Evaluation(loss=report["loss"], accuracy=report["accuracy"], macro_f1=report["macro_f1"], probs=p, labels=y,
                      index=i, report=report)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16/fp16 on an accelerator; nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
