"""Which code a spec may run: module factories and adapters by package, a model's remote code by a switch.

A spec file is data that people check into repositories and share; loading one must not run code the
user has not chosen to trust (the rule of transformers' ``trust_remote_code`` and torch's
``weights_only``). A ``kind: module`` backbone names a callable (``package.module:Callable``), and
importing its module already runs that package's top-level code, so the check comes before the import.

The user allows code in one of two ways, which add up:

- the ``--allow-module PKG`` (repeatable) and ``--trust-remote-code`` flags of the spec-taking commands,
  which hold for the command they are given to (:func:`allowing`);
- the environment variables ``FTENGINE_ALLOW_MODULES=pkg1,pkg2`` and ``FTENGINE_TRUST_REMOTE_CODE=1``
  (CI jobs, shells), read at each check.

Only builds from a spec are gated (the ``build_*`` builders); a Python caller who passes a factory to
``load_module_backbone`` itself has written the code that runs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ftengine.errors import UntrustedCodeError

ENV_MODULES = "FTENGINE_ALLOW_MODULES"
ENV_REMOTE_CODE = "FTENGINE_TRUST_REMOTE_CODE"

# What the current command's flags allow; `allowing` sets and restores it (tests run commands in-process).
_flag_packages: frozenset[str] = frozenset()
_flag_remote_code = False


def top_package(import_path: str) -> str:
    """``'pkg.sub.mod:Class.method'`` -> ``'pkg'``: the package whose code an import would run first."""
    return import_path.partition(":")[0].split(".")[0].strip()


def allowed_packages() -> frozenset[str]:
    """Top-level packages the user allows (flags of this command plus ``FTENGINE_ALLOW_MODULES``)."""
    from_env = {name.strip() for name in os.environ.get(ENV_MODULES, "").split(",") if name.strip()}
    return _flag_packages | from_env


def remote_code_allowed() -> bool:
    """Whether ``--trust-remote-code`` was given or ``FTENGINE_TRUST_REMOTE_CODE`` is 1/true/yes."""
    return _flag_remote_code or os.environ.get(ENV_REMOTE_CODE, "").strip().lower() in ("1", "true", "yes")


@contextmanager
def allowing(packages: Iterable[str] = (), remote_code: bool = False) -> Iterator[None]:
    """Allow these packages (and remote code) inside the block, on top of what is already allowed."""
    global _flag_packages, _flag_remote_code
    saved = _flag_packages, _flag_remote_code
    _flag_packages = _flag_packages | {top_package(p) for p in packages if p.strip()}
    _flag_remote_code = _flag_remote_code or remote_code
    try:
        yield
    finally:
        _flag_packages, _flag_remote_code = saved


def require_module_allowed(import_path: str, where: str) -> None:
    """Refuse to import ``import_path`` unless its top-level package is allowed; call before importing.

    Raises:
        UntrustedCodeError: one line naming the field, the package and the flag and variable that allow it.
    """
    package = top_package(import_path)
    if package in allowed_packages():
        return
    allow = f"--allow-module {package} or set {ENV_MODULES}={package}"
    raise UntrustedCodeError(
        f"{where}: '{import_path}' would run code from package '{package}', which is not allowed "
        f"(got {where.rpartition('.')[2]} '{import_path}'); if you trust it, run with {allow}",
        what=f"{where} runs code from package '{package}'", allow=allow)


def require_remote_code_allowed(source: str, where: str = "backbone.trust_remote_code") -> None:
    """Refuse ``trust_remote_code: true`` unless the user allows remote code.

    Raises:
        UntrustedCodeError: one line saying how to allow it.
    """
    if remote_code_allowed():
        return
    allow = f"--trust-remote-code or set {ENV_REMOTE_CODE}=1"
    raise UntrustedCodeError(
        f"{where}: true would run Python code shipped with the model '{source}', which is not allowed "
        f"(got trust_remote_code true); if you trust it, run with {allow}",
        what=f"{where} runs code shipped with '{source}'", allow=allow)


def require_backbone_allowed(backbone: Any) -> None:
    """Check a backbone spec section before anything is built: every piece of code it names is allowed.

    Raises:
        UntrustedCodeError: for the first piece of code that is not allowed.
    """
    kind = getattr(backbone, "kind", None)
    if kind == "module":
        require_module_allowed(backbone.factory, "backbone.factory")
        if ":" in backbone.adapter:  # registered adapters are ftengine's own code
            require_module_allowed(backbone.adapter, "backbone.adapter")
    elif kind == "hf" and backbone.trust_remote_code:
        require_remote_code_allowed(backbone.source)
