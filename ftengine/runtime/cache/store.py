"""One published cache entry (a split at a boundary) loaded on a storage tier, and batch lookup from it.

Tiers:

* ``device`` -- the rows live in accelerator memory; a batch is gathered there (CUDA kernel), nothing moves.
* ``host`` -- the rows live in host memory (pinned when a CUDA device is used, so gathered batches are
  pinned too and their copy to the device is asynchronous).
* ``disk`` -- the rows stay in the entry's files; each lookup reads its batch's rows (``rows.RowFile``,
  positioned reads): nothing is read up front and nothing stays resident in the process, only in the page cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ftengine.errors import RunError
from ftengine.kernels.ops import gather_ragged
from ftengine.runtime.cache.copier import DeviceCopier
from ftengine.runtime.cache.layout import DTYPES, INDEX_FILE, check_entry, read_manifest
from ftengine.runtime.cache.rows import RowFile

TIERS = ("device", "host", "disk")


@dataclass
class _Field:
    name: str
    kind: str  # "ragged": (sum_len, *feature); "fixed": (N, *feature)
    data: Tensor | RowFile  # (rows, prod(feature)) on the tier; the disk tier reads rows from the file per lookup
    feature_shape: tuple[int, ...]


def _load_file(path: Path, dtype: torch.dtype, numel: int, tier: str, device: torch.device, pin: bool) -> Tensor:
    if numel == 0:
        return torch.empty(0, dtype=dtype, device=device if tier == "device" else "cpu")
    if tier == "device":  # streamed from a mapping that goes right after: no full host copy
        return torch.from_file(str(path), shared=False, size=numel, dtype=dtype).to(device)
    host = torch.empty(numel, dtype=dtype, pin_memory=pin)
    with open(path, "rb") as f:
        read = f.readinto(memoryview(host.view(torch.uint8).numpy()))
    if read != host.numel() * host.element_size():
        raise OSError(f"{path}: short read ({read} bytes)")
    return host


class ActivationStore:
    """A complete entry on one tier; :meth:`lookup` turns example ids into a padded state on ``device``."""

    def __init__(self, path: Path, manifest: dict[str, Any], fields: list[_Field], index: Tensor, *, tier: str,
                 device: torch.device, compute_dtype: torch.dtype) -> None:
        self.path, self.manifest, self.fields, self.tier = path, manifest, fields, tier
        self.device, self.compute_dtype = device, compute_dtype
        self.num_examples = int(manifest["num_examples"])
        self._host_index = index.view(3, self.num_examples)  # offsets, lengths, slots (CPU)
        on = device if tier == "device" else torch.device("cpu")
        self._on = on
        self._index = self._host_index.to(on)
        self._ones = torch.ones(self.num_examples, dtype=torch.int64, device=on)
        self._copier = DeviceCopier(device) if device.type == "cuda" and on.type == "cpu" else None

    @classmethod
    def open(cls, path: Path, *, tier: str, device: torch.device | str,
             compute_dtype: torch.dtype = torch.float32) -> ActivationStore:
        """Load a published entry (checked against its manifest: sizes) onto ``tier``.

        Raises:
            RunError: the entry is incomplete or damaged (callers treat it as a miss and rebuild).
        """
        device = torch.device(device)
        problem = check_entry(path)
        manifest = read_manifest(path)
        if problem is not None or manifest is None:
            raise RunError(f"activation cache entry {path}: {problem}; it will be rebuilt")
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS} (got {tier!r})")
        pin = tier == "host" and device.type == "cuda"
        n = int(manifest["num_examples"])
        index = torch.from_numpy(np.fromfile(path / INDEX_FILE, dtype="<i8").astype(np.int64))
        if index.numel() != 3 * n:
            raise RunError(f"activation cache entry {path}: index has {index.numel()} values, expected {3 * n}")
        fields = []
        for name, f in manifest["fields"].items():
            shape = tuple(f["feature_shape"])
            width = math.prod(shape)
            dtype = DTYPES[f["dtype"]]
            data = (RowFile(path / f["file"], dtype, f["rows"], width) if tier == "disk" else
                    _load_file(path / f["file"], dtype, f["rows"] * width, tier, device, pin).view(f["rows"], width))
            fields.append(_Field(name, f["kind"], data, shape))
        return cls(path, manifest, fields, index, tier=tier, device=device, compute_dtype=compute_dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of activations held (the files' size on disk for the disk tier)."""
        return sum(f.data.nbytes for f in self.fields)

    @property
    def lossy(self) -> bool:
        """Whether rows are stored in a narrower type than they were computed in (bf16/fp16)."""
        return any(f.data.dtype != torch.float32 for f in self.fields)

    def lookup(self, index: Tensor) -> dict[str, Tensor]:
        """The state entering the boundary for examples ``index``: right-padded to the batch's longest
        example, with ``attention_mask`` (int64) for text; in ``compute_dtype`` on ``device``.

        Raises:
            IndexError: an id outside ``0..num_examples-1``.
        """
        ids = index.detach().to("cpu", torch.int64).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_examples):
            raise IndexError(f"activation cache lookup ({self.manifest['key']['split']}): example ids must be in "
                             f"0..{self.num_examples - 1} (got {int(ids.min())}..{int(ids.max())})")
        lengths = self._host_index[1]
        # The batch length comes from host-side lengths: no device->host sync for the shape.
        max_len = int(lengths.index_select(0, ids).max()) if ids.numel() else 0
        ids_on = ids.to(self._on, non_blocking=True)
        index_on = self._index
        state: dict[str, Tensor] = {}
        batch = ids.numel()
        for f in self.fields:
            ragged = f.kind == "ragged"
            if isinstance(f.data, RowFile):  # this batch's rows only, back to back: (sum of lengths, width)
                data, offsets, counts, rows = self._stage(f.data, ids, ragged)
            elif ragged:
                data, offsets, counts, rows = f.data, index_on[0], index_on[1], ids_on
            else:  # one row per example in a fixed field: the same kernel with length 1 gathers and converts
                data, offsets, counts, rows = f.data, index_on[2], self._ones, ids_on
            out, mask = gather_ragged(data, offsets, counts, rows, max_len if ragged else 1, self.compute_dtype)
            state[f.name] = out.view(batch, max_len, *f.feature_shape) if ragged else out.view(batch, *f.feature_shape)
            if ragged:
                state["attention_mask"] = mask
        if self._copier is not None:
            state = self._copier(state)
        return state

    def close(self) -> None:
        """Close the disk tier's files (memory tiers go with the object)."""
        for f in self.fields:
            if isinstance(f.data, RowFile):
                f.data.close()

    def _stage(self, rows: RowFile, ids: Tensor, ragged: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Read ``ids``' rows from the file; returns gather_ragged's data, offsets, lengths and ids over them."""
        counts = self._host_index[1].index_select(0, ids) if ragged else torch.ones_like(ids)
        starts = self._host_index[0 if ragged else 2].index_select(0, ids)
        data = rows.read(starts.tolist(), counts.tolist())
        return data, torch.cumsum(counts, 0) - counts, counts, torch.arange(ids.numel())
