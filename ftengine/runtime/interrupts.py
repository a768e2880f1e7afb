"""Ctrl-C (or SIGTERM) during training: finish the current optimizer step, checkpoint, exit with status 130.

A second Ctrl-C raises KeyboardInterrupt at once (no checkpoint), for when the step itself hangs. SIGTERM is
what schedulers send before preempting a job, and what torchrun sends the other ranks when one fails: it is
treated like the first Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from ftengine.errors import RunError


REPEAT_WINDOW = 2.0
"""Seconds after the first Ctrl-C during which another SIGINT counts as the same one (see StopRequest)."""


class Interrupted(RunError):
    """Raised after Ctrl-C once the run is checkpointed; the CLI prints it and exits with status 130."""

    exit_code = 130


class StopRequest:
    """A SIGINT/SIGTERM handler that only sets `requested` (the loop polls it between steps), installed in `with`.

    Args:
        notify: called on the first Ctrl-C (e.g. to print "stopping after this step").
    """

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self.requested = False
        self._notify = notify
        self._previous: dict[int, Any] = {}
        self._first = 0.0

    def _handler(self, signum: int, frame: Any) -> None:
        # A launcher passes the Ctrl-C it got on to its workers (SIGINT, then SIGTERM) just as the terminal's own
        # reaches them: a repeat within REPEAT_WINDOW seconds is the same request, not a second Ctrl-C.
        now = time.monotonic()
        if self.requested and signum == signal.SIGINT and now - self._first > REPEAT_WINDOW:
            raise KeyboardInterrupt
        if not self.requested:
            self.requested, self._first = True, now
            self._notify()

    def __enter__(self) -> StopRequest:  # noqa: PYI034 (typing.Self needs Python 3.11; we support 3.10)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def interrupted(run_dir: Path, where: str, *, saved: bool, after_nonfinite: bool, nproc: int | None) -> Interrupted:
    """What a run stopped by Ctrl-C (or SIGTERM) at `where` says: where its checkpoint is and how to continue.

    Args:
        saved: `output.save_last` is on.
        after_nonfinite: the last steps were NaN/inf, so the checkpoint kept is the one from before them.
        nproc: the number of processes of a data-parallel run (None: one).
    """
    if not saved:
        return Interrupted(f"ftengine: interrupted at {where}; no checkpoint saved (output.save_last is off)")
    if after_nonfinite:
        return Interrupted(f"ftengine: interrupted at {where} after non-finite steps; the checkpoint saved before "
                           f"them is kept in {run_dir}")
    more = f" --nproc {nproc}" if nproc is not None else ""
    return Interrupted(f"ftengine: interrupted; checkpoint saved in {run_dir} at {where}; continue with: "
                       f"ftengine run --resume {run_dir}{more}")


def diverged(run_dir: Path, step: int, consecutive: int, *, saved: bool) -> RunError:
    """What a run stopped after `consecutive` NaN/inf steps says (`saved`: `output.save_last` is on)."""
    kept = (f"the last good checkpoint is kept in {run_dir / 'checkpoints'}" if saved
            else "no checkpoint is kept (output.save_last is off)")
    return RunError(f"training: step {step}: the loss or gradients were NaN/inf for {consecutive} consecutive steps, "
                    f"so the run stopped; {kept}; try a lower optimizer.lr (or head_lr), training.precision=fp32, or "
                    "check the data for NaN/inf or broken rows (and `ftengine cache ls --verify` for a damaged "
                    "activation cache)")
