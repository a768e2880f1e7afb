"""The host allocator under a training run: the heap's free pages given back where a phase ends
(``release_free_heap``), and an opt-in fixed glibc mmap threshold (``FTENGINE_MMAP_THRESHOLD``).

glibc's malloc serves blocks from 128 KiB up with mmap, and each time such a block is freed it raises that threshold
to the block's size, up to 32 MiB. A few steps into a run, every activation then comes from the heap: 1-25 MB for
MiniLM at batch 32. Batches of different lengths and the cache fill's transients leave the heap in pieces that stay
resident. A fixed threshold (``FTENGINE_MMAP_THRESHOLD=4194304``, 4 MiB) maps the large blocks that
the heap cannot hold, and gives them back to the system when freed. Smaller blocks stay on the heap.

Measured on MiniLM, 1,200 / 600 tweets, 2 threads (AMD EPYC, one session; bench/README.md, e2e):

| run | peak RSS | time |
|---|---|---|
| quickstart recipe, set from process start | 1547 -> 1464 MB | top-stage epoch 13.6 -> 13.4 s |
| gradual unfreezing, set from process start | 1326 -> 1234 MB | 4.7 -> 4.3 s |
| quickstart recipe, set by ``ftengine run`` after its imports, 3 pairs | 1540 -> 1503 MB (medians) | 12.6 -> 13.8 s |
| plain full fine-tuning loop, five alternating pairs | median -50 MB | step time ratio 0.99 |
| full fine-tuning via ``run_spec``, three alternating pairs (medians) | 1982 -> 1928 MB | run 45.9 -> 46.2 s |
| quickstart recipe via ``run_spec``, three pairs | 1565 -> 1538 MB | run 41.4 -> 42.8 s |
| gradual unfreezing via ``run_spec``, three pairs | 1306 -> 1222 MB | run 25.7 -> 30.6 s |

So it saves 27-90 MB for up to ~20% more time per run, and it stays off unless asked for. Lower values save more and
cost more: 2 MiB saved 139 MB on the quickstart recipe for +17% epoch time, and 1 MiB made full fine-tuning steps
55-75% slower (every mid-sized block is mapped and faulted in afresh).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import TYPE_CHECKING, Any

from ftengine.errors import RunError
from ftengine.runtime.param_groups import layer_group_of

if TYPE_CHECKING:
    from ftengine.runtime.checkpoint import DeltaState

ENV = "FTENGINE_MMAP_THRESHOLD"
SUGGESTED = 4 << 20
"""A threshold that saved memory at little cost in the measurements above."""
_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h


def threshold_from_env() -> int:
    """``FTENGINE_MMAP_THRESHOLD`` in bytes (unset or 0: leave glibc's own, adaptive threshold).

    Raises:
        RunError: the variable is not a whole number of bytes.
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise RunError(f"{ENV}: expected a whole number of bytes (got {raw!r}); e.g. {ENV}={SUGGESTED} (4 MiB), or "
                       "0 (or unset) to leave glibc's own threshold") from None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc on Linux (musl's mallopt and malloc_trim do nothing), else None;
    looked up once, with ``malloc_trim``'s signature set."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (present in glibc only)
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> int | None:
    """Fix glibc's mmap threshold for this process when ``FTENGINE_MMAP_THRESHOLD`` asks for it (see the module
    docstring); the bytes set, or None when nothing was set (unset or 0, not Linux with glibc, or glibc refused the
    value: it takes at most 32 MiB)."""
    value = threshold_from_env()
    libc = _glibc() if value > 0 else None
    if libc is None:
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return value if mallopt(_M_MMAP_THRESHOLD, value) == 1 else None


def release_free_heap() -> bool:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim(0)``); True when it released any.

    Freed blocks inside glibc's heap stay resident: only its top is trimmed by itself. A stage's activations leave
    hundreds of MB of them (the quickstart recipe's top stage: 516 MB free of a 712 MB heap at its end), and whatever
    runs next touches new pages on top of them: the export reading back weights that were paged out. About 20 ms
    on that heap; called where a phase of the run ends (a stage starts, training ends), never per step: after a trim
    the next step faults its pages in afresh (every step: +10% top-stage time).
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def hand_back(optimizer: Any, layer_groups: set[str], weights: DeltaState | None = None) -> None:
    """Give back the memory no step will touch for a while: the weights of ``layer_groups`` (where they are pages of
    the optimizer's weights file, ``FlatOptimizer(weights_dir=...)``) and then the heap's free pages.

    The weights come back from the file if something reads them later (the export, a final evaluation that does not
    start from the cache). ``weights``: the checkpoints' delta, which hashes the frozen weights it leaves out; that is
    done first (``DeltaState.prime``), so that no checkpoint reads them back in.
    """
    if layer_groups:
        if weights is not None:
            weights.prime()
        optimizer.page_out(i for i, group in enumerate(optimizer.param_groups)
                           if layer_group_of(group) in layer_groups)
    release_free_heap()
