"""Fused kernels: op schemas with a PyTorch reference, plus optional native C++/CUDA implementations.

``backend_info()`` says which implementation the ops dispatch to on this machine and why; ``native_available`` and
``require_native`` answer the same question for one device. The choice is made here only: callers never import
``_native``.
"""

from __future__ import annotations

import torch

from ftengine.kernels import _native, ops

__all__ = ["NativeUnavailableError", "backend_info", "native_available", "ops", "require_native"]


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


class NativeUnavailableError(RuntimeError):
    """The compiled kernels were asked for but cannot run on the requested device."""


def _native_missing_reason(device: torch.device | str) -> str | None:
    """Why the native kernels cannot run on ``device`` (None: they can)."""
    kind = torch.device(device).type
    if not _native.available():
        return _native.IMPORT_ERROR or "ftengine._C is not loaded"
    if kind == "cuda" and not _native.build_info().get("cuda_compiled"):
        return "the extension was built without CUDA kernels"
    if kind not in ("cpu", "cuda"):
        return f"no native kernels for {kind} devices"
    return None


def native_available(device: torch.device | str = "cpu") -> bool:
    """Whether the ops dispatch to compiled kernels for tensors on ``device``."""
    return _native_missing_reason(device) is None


def require_native(device: torch.device | str = "cpu") -> None:
    """Raise :class:`NativeUnavailableError` (one line: device and reason) unless native kernels serve ``device``."""
    reason = _native_missing_reason(device)
    if reason is not None:
        raise NativeUnavailableError(f"native kernels unavailable for {torch.device(device)} ({reason})")
