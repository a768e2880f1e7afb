"""Weights on a private mapping of a file of their own, so that pages no stage reads can leave memory.

A CPU flat buffer in anonymous memory (``untouched_zeros``) keeps every page it was written, to the end of the
process, even for the layer groups no stage runs once the activation cache holds their output: MiniLM's embeddings
and layers 0-2 (68 MB) through the quickstart's top stage. Written to a file and mapped privately, the same bytes are
clean file pages: ``FileBuffer.page_out`` hands them back to the kernel (``MADV_PAGEOUT``, Linux 5.4+), and a later
read (the export, a checkpoint check) faults them back in from the file. A page something wrote (a group that
trained) is the process's own copy, which the kernel keeps (or swaps, never drops).

The file has no name (``O_TMPFILE``, or unlinked at once), so no other process can open it by name, and nothing
reads it but this mapping; it is freed with the mapping. Measured on the quickstart recipe at 1,200 / 600 tweets
(2-core AMD EPYC, alternating pairs): peak RSS 1407 against 1468 MB (medians of seven pairs, with the heap trims of
``release_free_heap``), top-stage epoch 15.0 against 15.1 s (bench/README.md, e2e, "Memory").
"""

from __future__ import annotations

import mmap
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)
"""Linux's madvise advice number (include/uapi/asm-generic/mman-common.h); Python defines it only on newer builds."""
_MAX_WRITE = 1 << 30  # bytes per pwrite: Linux writes at most ~2 GiB per call


def as_bytes(tensor: torch.Tensor) -> np.ndarray:
    """The raw bytes of a CPU ``tensor``, contiguous (a uint8 view works for every dtype, bf16 included: numpy has
    no bf16)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()


@dataclass
class FileBuffer:
    """A ``(n,)`` CPU tensor on a private mapping of an unnamed file that already holds its starting values."""

    tensor: torch.Tensor
    mapping: mmap.mmap

    @staticmethod
    def create(parts: Iterable[tuple[int, torch.Tensor]], n: int, dtype: torch.dtype,
               directory: str | Path) -> FileBuffer | None:
        """Write each ``(element offset, tensor)`` of ``parts`` into a new file in ``directory`` (elsewhere
        zeros: the file is sparse) and map it privately; None where that cannot help or cannot be done (not Linux,
        less than twice its size free on that disk, or the file system refused), and the caller keeps its anonymous
        buffer."""
        size = torch.empty((), dtype=dtype).element_size()
        nbytes = n * size
        if not sys.platform.startswith("linux") or nbytes == 0:
            return None
        try:
            if shutil.disk_usage(directory).free < 2 * nbytes:
                return None
            with tempfile.TemporaryFile(dir=directory) as file:
                fd = file.fileno()
                os.ftruncate(fd, nbytes)
                for offset, tensor in parts:
                    data, at = as_bytes(tensor), offset * size
                    while len(data):
                        written = os.pwrite(fd, data[:_MAX_WRITE], at)
                        data, at = data[written:], at + written
                # the mapping keeps its own descriptor: the file lives until the mapping is closed
                pages = mmap.mmap(fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            return None
        with warnings.catch_warnings():  # the mapping is writable; torch warns about buffers in general
            warnings.simplefilter("ignore", UserWarning)
            return FileBuffer(torch.frombuffer(pages, dtype=dtype, count=n), pages)

    def page_out(self, start: int, length: int) -> int:
        """Hand back the resident pages wholly inside elements ``[start, start + length)``; the bytes advised (0 where
        the kernel does not know the advice). Clean pages leave memory and are read from the file again on the next
        touch; the data never changes."""
        size = self.tensor.element_size()
        first = -(-start * size // mmap.PAGESIZE) * mmap.PAGESIZE  # round in: a page shared with a neighbour stays
        end = (start + length) * size // mmap.PAGESIZE * mmap.PAGESIZE
        if end <= first:
            return 0
        try:
            self.mapping.madvise(MADV_PAGEOUT, first, end - first)
        except OSError:  # EINVAL before Linux 5.4
            return 0
        return end - first
