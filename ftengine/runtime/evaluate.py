"""Evaluation passes: logits for a whole split, then loss, accuracy and macro-F1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Evaluation:
    """One split's predictions and summary metrics.

    Attributes:
        loss: mean cross-entropy (unweighted, so it compares across balance settings).
        accuracy: fraction of correct argmax predictions.
        macro_f1: unweighted mean of per-class F1 (classes absent from both labels and predictions excluded).
        probs: (N, C) float32 softmax probabilities, in the split's example order.
        labels: (N,) int64 true labels.
        index: (N,) int64 example ids.
    """

    loss: float
    accuracy: float
    macro_f1: float
    probs: Tensor
    labels: Tensor
    index: Tensor

    @property
    def preds(self) -> Tensor:
        """(N,) argmax predictions."""
        return self.probs.argmax(dim=1)

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        """`{prefix}loss`, `{prefix}accuracy`, `{prefix}macro_f1`."""
        return {f"{prefix}loss": self.loss, f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}


def macro_f1(labels: Tensor, preds: Tensor, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in `labels` or `preds` (scikit-learn's `f1_score(average="macro")`
    with its zero-division default)."""
    confusion = torch.bincount(labels * num_classes + preds, minlength=num_classes**2).view(num_classes, num_classes)
    tp = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    return float(f1[present].mean()) if present.any() else 0.0


@torch.no_grad()
def evaluate(logits_of: Callable[[dict[str, Any]], Tensor], batches: Iterable[dict[str, Any]], num_classes: int,
             *, should_stop: Callable[[], bool] = lambda: False) -> Evaluation | None:
    """Run `logits_of` over every batch (model in eval mode is the caller's job) and score it.

    Args:
        logits_of: batch -> (B, C) logits.
        batches: collated batches with `labels` and `index`.
        num_classes: C.
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
    loss = loss_sum / len(y)
    preds = p.argmax(dim=1)
    return Evaluation(loss=loss, accuracy=float((preds == y).double().mean()), macro_f1=macro_f1(y, preds, num_classes),
                      probs=p, labels=y, index=i)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16/fp16 on an accelerator; nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
