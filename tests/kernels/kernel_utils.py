"""Kernel-test helpers: device parametrization with clean skips, and the flat optimizer ops driven the same way
for the native ops and the reference (tolerances: ftengine.kernels.testing)."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from ftengine.kernels import _native

requires_native = pytest.mark.skipif(not _native.available(), reason=f"native extension unavailable: {_native.IMPORT_ERROR}")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda])]


def clone(case: dict) -> dict:
    """A copy of a case's buffers (non-tensor entries shared), so two implementations start from the same state."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}


def flat_step(case: dict, kind: str, mod: ModuleType, clip: float = 1.0, skip: bool = True) -> None:
    """One optimizer step on a case's flat buffers, in place: the grad norm, then ``adamw_step`` (``kind`` "adamw")
    or ``sgd_step`` (any other kind) of ``mod`` (``ftengine.kernels.ops`` or ``ftengine.kernels.reference``).
    A case with an ``anchor`` passes it (L2-SP; its ``hyper`` then has the l2sp column)."""
    sq = mod.flat_grad_sqnorm(case["grad"], case["segments"])
    if kind == "adamw":
        mod.adamw_step(case["param"], case["exp_avg"], case["exp_avg_sq"], case["master"], case["grad"],
                       case["segments"], case["hyper"], case["steps"], sq, clip, skip, case.get("anchor"))
    else:
        mod.sgd_step(case["param"], case["momentum_buffer"], case["master"], case["grad"], case["segments"],
                     case["hyper"], case["steps"], sq, clip, skip, case.get("anchor"))
