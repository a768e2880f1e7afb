"""User-facing error types.

Every error a user can cause carries a list of one-line problems, each shaped
``where: what (got X); how to fix``. The CLI prints them and exits 2 for a bad
spec, plan or data set, 1 for a run that failed for another reason it can explain.
"""

from __future__ import annotations

from collections.abc import Iterable


class FtengineError(Exception):
    """Base class: a list of one-line problems for the user."""

    exit_code = 1

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SpecError(FtengineError):
    """The spec file or an override is invalid."""

    exit_code = 2


class UntrustedCodeError(SpecError):
    """The spec names code (a module factory, an adapter, a model's remote code) the user has not allowed to run.

    Attributes:
        what: which code, e.g. ``backbone.factory runs code from package 'os'``.
        allow: how to allow it, e.g. ``--allow-module os or set FTENGINE_ALLOW_MODULES=os``.
    """

    def __init__(self, problems: str | Iterable[str], *, what: str = "", allow: str = "") -> None:
        super().__init__(problems)
        self.what, self.allow = what, allow


class PlanError(FtengineError):
    """The spec is valid but does not fit the model (freeze selectors, groups, classes)."""

    exit_code = 2


class DataError(FtengineError):
    """The data named by the spec is missing or malformed (file, row, column)."""

    exit_code = 2


class RunError(FtengineError):
    """A run failed for a reason that is not a bug (device missing, interrupted, out of memory)."""

    exit_code = 1
