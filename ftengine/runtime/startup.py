"""Where a run's start-up goes, from process start to the end of its first optimizer step, phase by phase.

`ftengine run` writes it to `run.json` (`final.startup_seconds`) and prints one line, e.g.
`start-up: 9.8s to the first step: imports 2.9s, backbone 1.1s, data 0.6s, plan 0.0s, cache 4.9s, ...`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

_IMPORTED = time.perf_counter()  # a fallback clock start where the process's own start time is unknown


def process_seconds() -> float:
    """Seconds since this process started (Linux: its start time in /proc; elsewhere since ftengine loaded)."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime, in clock ticks
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


class Startup:
    """Phase timings of one run's start-up (seconds); `imports` is what passed before the run began."""

    def __init__(self) -> None:
        self._origin = time.perf_counter() - process_seconds()  # process start on the perf_counter clock
        self.phases: dict[str, float] = {"imports": round(time.perf_counter() - self._origin, 3)}
        self.first_step_at: float | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body as phase `name` (added up when a phase runs more than once)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - started, 3)

    def first_step(self) -> None:
        """Mark the end of the run's first optimizer step (later calls change nothing)."""
        if self.first_step_at is None:
            self.first_step_at = round(time.perf_counter() - self._origin, 3)

    def record(self) -> dict[str, float | None]:
        """The phases, `other` (what no phase covers) and `first_step_at` (process age then)."""
        out: dict[str, float | None] = dict(self.phases)
        if self.first_step_at is not None:
            out["other"] = round(max(0.0, self.first_step_at - sum(self.phases.values())), 3)
        out["first_step_at"] = self.first_step_at
        return out

    def line(self) -> str:
        """One line for the run log."""
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.record().items() if k != "first_step_at" and v)
        if self.first_step_at is None:
            return f"start-up: {parts}"
        return f"start-up: {self.first_step_at:.1f}s from process start to the end of the first step: {parts}"
