"""Kernel-test helpers: device parametrization with clean skips (tolerances: ftengine.kernels.testing)."""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import _native

requires_native = pytest.mark.skipif(not _native.available(), reason=f"native extension unavailable: {_native.IMPORT_ERROR}")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda])]
