"""Typed wrappers over the ``torch.ops.ftengine`` ops (schemas in ``_schemas``)."""

from __future__ import annotations

import torch

from ftengine.kernels import _native  # noqa: F401  (defines the schemas and loads the native kernels)


def scale_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``x + alpha * y`` (placeholder op that proves the build and dispatch chain)."""
    return torch.ops.ftengine.scale_add(x, y, alpha)
