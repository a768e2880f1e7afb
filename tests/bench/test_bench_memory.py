"""The resident-memory breakdown of `ftengine bench e2e`: smaps parsed by kind, and a live sample that adds up."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from ftengine.bench.memory import PeakMemory, resident_by_kind

SAMPLE = """\
55d0c0a00000-55d0c0b00000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 900 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                 512 kB
7f0000100000-7f0000200000 r--p 00000000 08:01 42                         /models/m/model.safetensors
Rss:                2048 kB
7f0000200000-7f0000300000 r-xp 00001000 08:01 43                         /usr/lib/libtorch_cpu.so.2 (deleted)
Rss:                1024 kB
7f0000300000-7f0000301000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                 100 kB
7f0000400000-7f0000500000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
Rss:                 408 kB
"""


def test_smaps_is_summed_by_kind_of_mapping() -> None:
    got = resident_by_kind(SAMPLE)
    assert got == {"heap_mb": round(900 / 1024, 1), "anonymous_mb": round((512 + 4 + 100 + 408) / 1024, 1),
                   "files_mb": 2.0, "libraries_mb": 1.0}


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc only")
def test_live_breakdown_adds_up_to_the_resident_size_and_sees_a_new_buffer() -> None:
    with PeakMemory(interval=0.01, margin_mb=8) as memory:
        before = dict(memory.breakdown)
        # 64 MiB of new anonymous memory, written: resident. Not malloc: a long-lived process (this test session)
        # may serve it from heap memory that is already resident.
        block = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for i in range(0, len(block), 4096):
            block[i] = 1
    after = memory.breakdown
    parts = sum(after[f"{k}_mb"] for k in ("heap", "anonymous", "files", "libraries"))
    assert parts == pytest.approx(after["rss_mb"], abs=0.05 * after["rss_mb"])  # kernel's own two counts agree
    assert after["anonymous_mb"] - before["anonymous_mb"] >= 60, (before, after)
    block.close()


def test_no_proc_no_breakdown(monkeypatch) -> None:
    from ftengine.bench import memory as module

    monkeypatch.setattr(module, "SMAPS", Path("/nonexistent/smaps"))
    with PeakMemory() as memory:
        pass
    assert memory.breakdown is None
