"""glibc's mmap threshold under a run: left alone by default, fixed when FTENGINE_MMAP_THRESHOLD asks for it."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftengine.errors import RunError
from ftengine.runtime.allocator import ENV, SUGGESTED, threshold_from_env, tune_allocator


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018
        libc.mallinfo2  # noqa: B018 (glibc 2.33+)
    except (OSError, AttributeError):
        return None
    return libc


def test_the_variable_sets_or_disables_the_threshold(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert threshold_from_env() == 0 and tune_allocator() is None  # off unless asked for
    monkeypatch.setenv(ENV, str(4 << 20))
    assert threshold_from_env() == SUGGESTED == 4 << 20
    monkeypatch.setenv(ENV, "0")
    assert threshold_from_env() == 0 and tune_allocator() is None  # 0: glibc keeps its own threshold
    monkeypatch.setenv(ENV, "4MB")
    with pytest.raises(RunError, match=f"{ENV}: expected a whole number of bytes .got '4MB'.*or 0"):
        threshold_from_env()


_PROBE = """
import ctypes, json
from ftengine.runtime.allocator import tune_allocator

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mapped(size):  # bytes glibc mapped on its own for a block of `size` (0: it came from the heap)
    libc.malloc_trim(0)  # a short heap top: a large block needs new memory, the heap's or a mapping
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    out = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return out, libc.mallinfo2().hblkhd - before

libc.free(libc.malloc(24 << 20))  # glibc's own threshold rises to the size of a mapped block freed: 24 MiB now
untuned = mapped(6 << 20)
result = tune_allocator()
print(json.dumps({"untuned": untuned, "tuned": mapped(6 << 20), "result": result}))
"""


def test_after_tuning_a_block_above_the_threshold_is_mapped_and_returned() -> None:
    if _glibc() is None:
        pytest.skip("glibc's mallopt/mallinfo2 are Linux-glibc only")
    # A fresh interpreter: a long-lived one (this test session) has freed chunks in its heap that can serve any
    # block, mapped or not. The probe imports only the allocator module.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, ENV: str(SUGGESTED), "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=root,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["result"] == SUGGESTED
    assert seen["untuned"] == [0, 0]  # glibc's raised threshold: a 6 MiB block comes from the heap
    mapped, after_free = seen["tuned"]
    assert mapped >= 6 << 20 and after_free == 0  # mapped on its own, and unmapped (returned) when freed
