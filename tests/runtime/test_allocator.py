"""glibc's mmap threshold under a run: left alone by default, fixed when FTENGINE_MMAP_THRESHOLD asks for it."""

from __future__ import annotations

import ctypes
import sys

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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


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


def test_after_tuning_a_block_above_the_threshold_is_mapped_and_returned(monkeypatch) -> None:
    libc = _glibc()
    if libc is None:
        pytest.skip("glibc's mallopt/mallinfo2 are Linux-glibc only")
    monkeypatch.setenv(ENV, str(SUGGESTED))
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # glibc's own threshold rises to the size of every mapped block freed: after this it is 24 MiB.
    libc.free(libc.malloc(24 << 20))
    libc.malloc_trim(0)  # a short heap top: the next large block needs new memory (the heap's, or a mapping)
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(6 << 20)
    untuned = libc.mallinfo2().hblkhd - before  # 0: a 6 MiB block now comes from the heap
    libc.free(block)
    assert tune_allocator() == SUGGESTED
    libc.malloc_trim(0)
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(6 << 20)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    assert untuned == 0 and mapped >= 6 << 20
    assert libc.mallinfo2().hblkhd == before  # freed: unmapped, back to the system
