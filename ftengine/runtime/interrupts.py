"""Ctrl-C during training: finish the current optimizer step, checkpoint, exit with status 130.

A second Ctrl-C raises KeyboardInterrupt at once (no checkpoint), for when the step itself hangs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ftengine.errors import RunError


class Interrupted(RunError):
    """Raised after Ctrl-C once the run is checkpointed; the CLI prints it and exits with status 130."""

    exit_code = 130


class StopRequest:
    """A SIGINT handler that only sets `requested` (the loop polls it between steps), installed while in `with`.

    Args:
        notify: called on the first Ctrl-C (e.g. to print "stopping after this step").
    """

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self.requested = False
        self._notify = notify
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._notify()

    def __enter__(self) -> StopRequest:  # noqa: PYI034 (typing.Self needs Python 3.11; we support 3.10)
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        except ValueError:  # not the main thread: leave Ctrl-C alone
            pass
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
