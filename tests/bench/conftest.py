"""Bench test helpers: run `ftengine` in-process and capture its output."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from ftengine.cli import main


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`cli("bench", "all", "--help")` -> Result(exit code, stdout, stderr)."""
    def run(*argv: str) -> Result:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run
