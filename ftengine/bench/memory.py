"""Where a process's resident memory is, by kind of mapping, taken near its peak (Linux ``/proc/self/smaps``).

A peak RSS alone does not say what to cut. Two runs with the same peak can hold it in glibc's heap (activations
and their fragments), in anonymous mappings (large buffers: ftengine's flat optimizer buffers, a cached boundary),
in mapped files (a model's weights read through mmap) or in shared libraries. ``PeakMemory`` polls the resident
size in a background thread and reads the breakdown each time the run sets a new high by more than ``margin_mb``,
so the last breakdown is within that margin (and one polling interval) of the peak.

    with PeakMemory() as memory:
        train()
    memory.breakdown  # {"rss_mb": 1562.0, "heap_mb": 669.1, "anonymous_mb": 519.4, "files_mb": 0.0, ...}
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

KINDS = ("heap", "anonymous", "files", "libraries")
SMAPS = Path("/proc/self/smaps")
STATUS = Path("/proc/self/status")


# [anon:...], [stack] and the kernel's few pages ([vdso], [vvar]); shared anonymous memory (torch's shared tensors)
_ANONYMOUS = ("[", "/dev/zero", "/memfd:", "/SYSV")


def _kind(name: str) -> str:
    """The kind of one mapping from its smaps name ('' for anonymous memory)."""
    if name == "[heap]":
        return "heap"
    if not name or name.startswith(_ANONYMOUS):
        return "anonymous"
    return "libraries" if ".so" in Path(name).name else "files"


def resident_by_kind(smaps: str) -> dict[str, float]:
    """MB resident per kind (``KINDS``) in the text of a ``/proc/<pid>/smaps`` file."""
    totals = dict.fromkeys(KINDS, 0)
    kind = "anonymous"
    for line in smaps.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):  # a mapping's header: range perms offset dev inode [name]
            fields = line.split(None, 5)
            kind = _kind(fields[5].strip() if len(fields) > 5 else "")
        elif head == "Rss:":
            totals[kind] += int(rest.split()[0])  # kB
    return {f"{k}_mb": round(v / 1024, 1) for k, v in totals.items()}


def _rss_mb() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Background sampler: the resident breakdown at (near) this process's peak; ``breakdown`` is None off Linux."""

    def __init__(self, interval: float = 0.25, margin_mb: float = 16.0) -> None:
        self.interval, self.margin_mb = interval, margin_mb
        self.breakdown: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        rss = _rss_mb()
        if self.breakdown is None or rss > self.breakdown["rss_mb"] + self.margin_mb:
            self.breakdown = {"rss_mb": round(rss, 1), **resident_by_kind(SMAPS.read_text())}

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if SMAPS.exists() and STATUS.exists():
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._sample()
