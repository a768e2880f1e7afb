"""Fused kernels: op schemas with a PyTorch reference, plus optional native C++/CUDA implementations.

``backend_info()`` says which implementation the ops dispatch to on this machine and why.
"""

from __future__ import annotations

import torch

from ftengine.kernels import _native, ops

__all__ = ["backend_info", "ops"]


def backend_info() -> dict:
    """Which kernel backend is active and why.

    Returns:
        dict with ``active`` ("native-cuda" | "native-cpu" | "reference"), ``native_available`` (the extension
        loaded), ``reason`` (why the fastest backend is not active, or None) and ``build`` (what the extension
        was compiled with; empty without it).
    """
    build = _native.build_info()
    if not _native.available():
        return dict(active="reference", native_available=False, reason=_native.IMPORT_ERROR, build=build)
    if torch.cuda.is_available():
        if build.get("cuda_compiled"):
            return dict(active="native-cuda", native_available=True, reason=None, build=build)
        reason = "a CUDA device is visible but the extension was built without CUDA kernels (CUDA ops use the reference)"
        return dict(active="native-cpu", native_available=True, reason=reason, build=build)
    reason = None if not build.get("cuda_compiled") else "no CUDA device visible (CUDA kernels compiled but unused)"
    return dict(active="native-cpu", native_available=True, reason=reason, build=build)
