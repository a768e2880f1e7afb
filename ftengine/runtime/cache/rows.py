"""The disk tier's rows: read from an entry's file per batch with positioned reads, nothing mapped.

A memory-mapped file would count every page a lookup touched in the process's resident memory until the mapping
goes, so after one epoch the whole boundary would be resident twice over: once in the kernel's page cache and once
more in the process's page tables. Positioned reads (``preadv``) copy only a batch's rows into a
staging tensor; the file's pages stay in the page cache, which the kernel shares between processes (the ranks of one
node) and reclaims under memory pressure. A batch of 32 tweets at ~30 tokens x 384 fp32 features is ~1.5 MB: one
copy from the page cache, far below the cost of the layers that read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ftengine.errors import RunError

_PREADV = hasattr(os, "preadv")  # decided once: the reads below run for every example of every batch


class RowFile:
    """``rows`` rows of ``width`` elements of ``dtype``, back to back in ``path``; :meth:`read` gathers row ranges."""

    def __init__(self, path: Path, dtype: torch.dtype, rows: int, width: int) -> None:
        self.path, self.dtype, self.rows, self.width = path, dtype, rows, width
        self.row_bytes = width * torch.empty((), dtype=dtype).element_size()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed with this object)
        size = os.fstat(self._file.fileno()).st_size
        if size != rows * self.row_bytes:
            self._file.close()
            raise RunError(f"activation cache file {path}: {size} bytes, expected {rows * self.row_bytes} "
                           f"({rows} rows of {self.row_bytes} bytes); it will be rebuilt")

    @property
    def nbytes(self) -> int:
        """Bytes of the file (none of them held in this process)."""
        return self.rows * self.row_bytes

    def read(self, starts: list[int], counts: list[int]) -> Tensor:
        """Rows ``starts[i] : starts[i] + counts[i]`` for each ``i``, back to back: ``(sum(counts), width)``.

        Raises:
            RunError: the file is shorter than its manifest said (changed since it was opened).
        """
        out = torch.empty(sum(counts), self.width, dtype=self.dtype)
        if out.numel() == 0:
            return out
        buffer = memoryview(out.view(-1).view(torch.uint8).numpy())  # a uint8 view: numpy has no bf16
        fd, pos = self._file.fileno(), 0
        for start, count in zip(starts, counts):
            n = count * self.row_bytes
            got = _read_into(fd, buffer[pos:pos + n], start * self.row_bytes)
            if got != n:
                raise RunError(f"activation cache file {self.path}: short read at row {start} ({got} of {n} bytes): "
                               f"it changed after it was opened; remove the entry (`ftengine cache clear "
                               f"{self.path.parent.name[:8]}`) and rerun")
            pos += n
        return out

    def close(self) -> None:
        self._file.close()


def _read_into(fd: int, target: memoryview, offset: int) -> int:
    """Read ``len(target)`` bytes at ``offset`` into ``target`` (fewer only at the end of the file)."""
    done = 0
    while done < len(target):
        if _PREADV:  # straight into the staging tensor
            got = os.preadv(fd, [target[done:]], offset + done)
        else:  # platforms without preadv: one extra copy
            chunk = os.pread(fd, len(target) - done, offset + done)
            got = len(chunk)
            target[done:done + got] = chunk
        if got == 0:
            break
        done += got
    return done
