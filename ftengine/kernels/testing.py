"""Comparison tolerances for kernel tests and benchmark validation: one table, keyed by dtype."""

from __future__ import annotations

import torch

# Two implementations of the same fp32 math differ by operation order and FMA contraction only; 16-bit results may
# land one rounding step apart (bf16 has 8 significant bits, fp16 11).
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.float32: dict(rtol=2e-5, atol=2e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),
    torch.int64: dict(rtol=0.0, atol=0.0),
}


def tol(dtype: torch.dtype) -> dict[str, float]:
    """``torch.testing.assert_close`` keyword arguments for values of ``dtype``."""
    return TOLERANCES[dtype]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """assert_close with the tolerance of ``expected``'s dtype and a label in the failure message."""
    torch.testing.assert_close(actual, expected, **tol(expected.dtype), msg=lambda m: f"{what}: {m}")
