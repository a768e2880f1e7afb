"""Resolve the paths a spec names: relative to the spec file, or inside an installed package.

``pkg:<package>/<relative path>`` points at a file or folder shipped inside an installed
Python package (bundled weights and data sets). The package is located without importing it,
so resolving a path never runs a package's import-time code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PKG_PREFIX = "pkg:"


def is_package_path(value: str) -> bool:
    """True for ``pkg:<package>/<rel>`` paths."""
    return value.startswith(PKG_PREFIX)


def package_root(package: str) -> Path | None:
    """Folder of an installed top-level package, or None when it is not installed."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    return Path(found.origin).parent if found.origin else None


def resolve_path(value: str, base_dir: str | Path | None = None) -> Path:
    """Turn a spec path into an absolute path (it may not exist).

    Args:
        value: a path, absolute or relative to ``base_dir``, or ``pkg:<package>/<rel>``.
        base_dir: the spec file's folder; relative paths are taken from here (default: cwd).

    Raises:
        FileNotFoundError: for ``pkg:`` paths whose package is not installed; the message
            names the package so the caller can say which install is missing.
    """
    if is_package_path(value):
        package, _, rel = value[len(PKG_PREFIX):].partition("/")
        root = package_root(package)
        if root is None:
            raise FileNotFoundError(f"package '{package}' is not installed (pip install {package.replace('_', '-')})")
        return root / rel if rel else root
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return path
