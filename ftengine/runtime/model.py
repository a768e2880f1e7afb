"""FineTuneModel: a Backbone and a classification head, runnable from any layer-group boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "pixels")
"""Batch keys the backbone reads; collate also adds `labels` and `index`, which the model never sees."""


class FineTuneModel(nn.Module):
    """`head(backbone(batch))`, with parameters named `backbone.<...>` and `head.<...>`.

    Args:
        backbone: an `ftengine.backbones.Backbone`.
        head: maps the backbone's final state to logits (B, num_classes).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Logits for a collated batch of raw inputs."""
        return self.forward_from(0, inputs_of(batch))

    def forward_from(self, boundary: int, state: Mapping[str, Tensor], *, frozen_prefix: int = 0,
                     prefix_dtype: torch.dtype | None = None) -> Tensor:
        """Logits from the activations entering group `boundary` (0: raw inputs).

        Args:
            boundary: first backbone group to run.
            state: raw inputs (boundary 0), or cached activations entering `boundary`.
            frozen_prefix: groups below this index are frozen: run them without building an autograd graph
                (same numbers, no activation memory kept for backward).
            prefix_dtype: run the frozen prefix under autocast to this dtype (`cache.fill_precision`: the same
                precision the cache was filled in), None: as the caller's context says.
        """
        if boundary < frozen_prefix:
            device = next(iter(state.values())).device if state else torch.device("cpu")
            with torch.no_grad(), (torch.autocast(device.type, dtype=prefix_dtype) if prefix_dtype is not None
                                   else contextlib.nullcontext()):
                state = self.backbone.forward_from(boundary, state, stop=frozen_prefix)
            if prefix_dtype is not None:  # the trainable layers take what a cache lookup gives: fp32 activations
                state = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}
            boundary = frozen_prefix
        return self.head(self.backbone.forward_from(boundary, state))


def inputs_of(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The backbone's inputs from a collated batch (drops `labels`, `index` and other bookkeeping)."""
    return {k: v for k, v in batch.items() if k in INPUT_KEYS}


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch to `device` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
