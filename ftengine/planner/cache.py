"""Cache points: may a stage reuse stored activations of its frozen prefix instead of recomputing them?

Caching is only correct when the frozen prefix computes the same output for the same example every
epoch: its dropout off (`freeze.frozen_dropout: eval`, or no dropout in it), its BatchNorm statistics
fixed (`freeze.frozen_batchnorm: eval`, or no BatchNorm in it) and no random augmentation of the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ftengine.planner.graph import CachePlan
from ftengine.planner.selectors import compress_list
from ftengine.spec import Spec

CACHE_DTYPES: dict[str, tuple[str, int]] = {"fp32": ("float32", 4), "bf16": ("bfloat16", 2), "fp16": ("float16", 2)}
"""Activation-cache element types: spec name (`cache.dtype`) -> (torch dtype name, bytes per element).

The one table of them: the planner sizes cache entries from it, the runtime's cache layout maps the names to torch
dtypes with it (the planner itself stays free of torch)."""


def cache_plan(spec: Spec) -> CachePlan:
    """The activation cache's settings as the run will use them (`spec.cache`)."""
    c = spec.cache
    return CachePlan(enabled=c.enabled, dtype=c.dtype, tier=c.tier, budget_mb=c.budget_mb, dir=c.dir,
                     persist=c.persist, fill_precision=c.fill_precision)


def example_len(spec: Spec, backbone: Any) -> int | None:
    """Tokens per example (text: `data.max_length`, an upper bound) or image side used for cache sizes."""
    if backbone.modality == "text":
        return getattr(spec.data, "max_length", None)
    side = getattr(spec.data, "image_size", None)
    return side or (getattr(backbone, "preprocessing", None) or {}).get("image_size")


def boundary_bytes(backbone: Any, boundary: int, length: int | None, dtype: str) -> int | None:
    """Bytes per example of the activations entering group `boundary` (None without a size to go on)."""
    if length is None and backbone.modality == "text":
        return None
    shape = backbone.boundary_shape(boundary, length)
    # e.g. MiniLM at 128 tokens: (128, 384) fp32 = 196,608 B per example
    return math.prod(shape) * CACHE_DTYPES[dtype][1]


def refusals(spec: Spec, prefix: Sequence[Any]) -> list[str]:
    """Why the frozen `prefix` (LayerGroup-like objects) cannot be cached; empty when it can."""
    reasons = []
    if spec.cache.enabled == "off":
        reasons.append("cache.enabled is off")
    augment = getattr(spec.data, "augment", None)
    if augment is not None and augment.is_random:
        reasons.append("random augmentation (data.augment) changes the inputs every epoch")
    dropout = [g.name for g in prefix if g.has_dropout]
    if spec.freeze.frozen_dropout == "train" and dropout:
        reasons.append(f"freeze.frozen_dropout is 'train' and {compress_list(dropout)} use dropout")
    batchnorm = [g.name for g in prefix if g.has_batchnorm]
    if spec.freeze.frozen_batchnorm == "train" and batchnorm:
        reasons.append(f"freeze.frozen_batchnorm is 'train' and {compress_list(batchnorm)} update BatchNorm statistics")
    return reasons
