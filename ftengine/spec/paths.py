"""Resolve the paths a spec names: relative to the spec file, or inside an installed package.

``pkg:<package>/<relative path>`` points at a file or folder shipped inside an installed
Python package (bundled weights and data sets). The package is located without importing it,
so resolving a path never runs a package's import-time code, and a ``pkg:`` path never leaves
its package (no ``..`` parts, no symlink pointing outside).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PKG_PREFIX = "pkg:"


class PackagePathError(FileNotFoundError):
    """A ``pkg:`` path that points outside its package.

    A FileNotFoundError because, to every caller, it is a file the package does not hold: callers that
    report a missing ``pkg:`` file (with the spec field it came from) report this one too.
    """


def is_package_path(value: str) -> bool:
    """True for ``pkg:<package>/<rel>`` paths."""
    return value.startswith(PKG_PREFIX)


def package_path_problem(value: str) -> str | None:
    """What is wrong with the text of a ``pkg:`` path (no file-system access), or None.

    The package must be a top-level name (finding ``a.b`` would import ``a``, running its code) and the
    relative part must stay inside it (no ``..``, not absolute).
    """
    package, _, rel = value[len(PKG_PREFIX):].partition("/")
    if not package.isidentifier():
        return "the part after 'pkg:' must be an installed top-level package name, then '/'"
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts or rel.startswith(("/", "\\")):  # root / "/etc/passwd" is /etc/passwd
        return "the path leaves its package"
    return None


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
        PackagePathError: a ``pkg:`` path that leaves its package (``..``, or a symlink inside it).
    """
    if is_package_path(value):
        problem = package_path_problem(value)
        if problem is not None:
            raise PackagePathError(problem)
        package, _, rel = value[len(PKG_PREFIX):].partition("/")
        root = package_root(package)
        if root is None:
            raise FileNotFoundError(f"package '{package}' is not installed (pip install {package.replace('_', '-')})")
        path = root / rel if rel else root
        real_root, real = root.resolve(), path.resolve()  # symlinks followed: where a read would really go
        if real != real_root and real_root not in real.parents:
            raise PackagePathError(f"the path leads to '{real}', outside package '{package}' ({real_root})")
        return path
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return path
