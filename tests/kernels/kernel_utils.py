"""Kernel-test helpers: tolerances keyed by dtype and device parametrization with clean skips."""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import _native

# Tolerances for comparing two implementations of the same math, keyed by the dtype being compared.
# fp32 differs only by operation order / FMA contraction; bf16/fp16 results may land one rounding step apart.
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
}

requires_native = pytest.mark.skipif(not _native.available(), reason=f"native extension unavailable: {_native.IMPORT_ERROR}")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda])]


def tol(dtype: torch.dtype) -> dict[str, float]:
    """assert_close keyword arguments for values of ``dtype``."""
    return TOLERANCES[dtype]
