"""Pooling: the backbone's final state -> one feature vector per example.

Text states are ``{"hidden": (B, T, H), "attention_mask": (B, T), optional "pooled": (B, H)}``;
image states are ``{"features": (B, C, H, W)}`` (or already pooled ``(B, C)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

State = Mapping[str, Tensor]

AUTO_POOLING = {"encoder": "mean", "decoder": "last", "cnn": "avg", "vit": "avg"}
"""``pooling: auto`` per backbone family: sentence-transformer style mean for encoders, the last real
token for decoders (the only one that has seen the whole text), global average for CNNs; vision
transformers already end in one vector per image ([CLS] after the final norm), which ``avg`` passes through."""

TEXT_POOLINGS = ("cls", "mean", "last", "pooler")
IMAGE_POOLINGS = ("avg", "max")


def _mask(state: State) -> Tensor:
    hidden = state["hidden"]
    mask = state.get("attention_mask")
    if mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    return mask.bool()


def pool_cls(state: State) -> Tensor:
    """The first token's hidden state ([CLS] for BERT-style encoders): (B, H)."""
    return state["hidden"][:, 0]


def pool_mean(state: State) -> Tensor:
    """Mean over real tokens (padding excluded by the attention mask): (B, H)."""
    hidden = state["hidden"]
    mask = _mask(state).unsqueeze(-1)
    # Sum in fp32: a bf16 running sum over hundreds of tokens loses digits the mean needs.
    total = (hidden.float() * mask).sum(dim=1)
    return (total / mask.sum(dim=1).clamp(min=1)).to(hidden.dtype)


def pool_last(state: State) -> Tensor:
    """The hidden state of each row's last real token (right or left padding): (B, H)."""
    hidden = state["hidden"]
    mask = _mask(state)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1)  # (B,) 0 for an all-padding row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def pool_pooler(state: State) -> Tensor:
    """The backbone's own pooler output (BERT: tanh(W h_cls)): (B, H)."""
    if "pooled" not in state:
        raise KeyError("head.pooling 'pooler': the backbone's final state has no 'pooled' output; use 'cls' or 'mean'")
    return state["pooled"]


def _spatial(state: State) -> Tensor:
    return state["features"]


def pool_avg(state: State) -> Tensor:
    """Global average over the spatial dimensions of (B, C, H, W); (B, C) passes through."""
    x = _spatial(state)
    return x if x.dim() == 2 else x.mean(dim=tuple(range(2, x.dim())))


def pool_max(state: State) -> Tensor:
    """Global max over the spatial dimensions of (B, C, H, W); (B, C) passes through."""
    x = _spatial(state)
    return x if x.dim() == 2 else x.flatten(2).amax(dim=2)


POOLINGS: dict[str, Callable[[State], Tensor]] = {
    "cls": pool_cls, "mean": pool_mean, "last": pool_last, "pooler": pool_pooler, "avg": pool_avg, "max": pool_max,
}
