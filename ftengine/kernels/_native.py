"""Guarded import of the compiled extension ``ftengine._C``.

Importing ``_C`` registers its CPU (and CUDA) kernels with the dispatcher, overriding the PyTorch reference
kernels registered in ``_schemas``. When the extension is missing, fails to load (for instance it was built
against another torch), or ``FTENGINE_DISABLE_NATIVE=1`` is set, nothing is registered and every op runs on
its reference; the reason is kept for ``ftengine info``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ftengine.kernels import _schemas  # noqa: F401  (schemas first: the native kernels attach to them)

DISABLE_ENV = "FTENGINE_DISABLE_NATIVE"


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _load() -> tuple[ModuleType | None, str | None]:
    if _disabled():
        return None, f"{DISABLE_ENV}=1 is set"
    try:
        return importlib.import_module("ftengine._C"), None
    except ImportError as exc:  # missing (pure-Python install) or unloadable (ABI / torch version mismatch)
        return None, f"ftengine._C could not be imported: {exc}"


C, IMPORT_ERROR = _load()


def available() -> bool:
    """Whether the compiled kernels are loaded and registered."""
    return C is not None


def build_info() -> dict:
    """What the extension was compiled with (empty without it)."""
    return dict(C.build_info()) if C is not None else {}
