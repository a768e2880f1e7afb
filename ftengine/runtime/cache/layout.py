"""On-disk layout of one cache entry (one split at one boundary) and its crash-safe publication.

An entry is a directory ``<root>/<entry_id>/`` holding:

* ``<field>.bin`` -- raw little-endian element data. Ragged (text) fields are ``(sum_len, *feature)``:
  each example's real tokens only, examples back to back in fill order, never padding. Fixed fields
  (pooled vectors, image feature maps) are ``(N, *feature)`` in fill order.
* ``index.bin`` -- int64 ``offsets[N]``, ``lengths[N]``, ``slots[N]`` indexed by example id: example ``i``'s
  tokens are rows ``offsets[i] : offsets[i] + lengths[i]`` of a ragged field and row ``slots[i]`` of a fixed one.
* ``manifest.json`` -- key parts, shapes, byte sizes and per-chunk CRC-32s of every file (see ``integrity``);
  written last.

A fill writes into ``.partial-<entry_id>-<host>-<pid>-<nonce>/`` and publishes with one atomic directory
rename after every file is flushed and the manifest written. In a data-parallel run each local rank fills a
*part* (the examples of its share of the fill batches) and seals it in place, in a staging folder named
``.partial-<entry_id>.part<r>of<L>-<host>-<pid>-<nonce>/``; ``shards.merge_parts`` joins a node's parts
into the entry and publishes it the same way. A crash leaves only a ``.partial-*`` folder
(ignored, removed once its process is gone); an entry whose files do not match its manifest (truncated,
edited, corrupted on disk) is treated as missing and rebuilt. Sizes are checked on every open; the checksums
when a run opens an entry it did not fill itself (``check_entry(full=True)``) and by ``cache ls --verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from ftengine.errors import RunError
from ftengine.kernels.pages import as_bytes
from ftengine.planner.cache import CACHE_DTYPES
from ftengine.runtime.cache.integrity import ChunkSums, damaged_chunks, describe_damage
from ftengine.runtime.cache.keys import FORMAT_VERSION, CacheKey

MANIFEST = "manifest.json"
INDEX_FILE = "index.bin"
PARTIAL_PREFIX = ".partial-"
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, torch_name) for name, (torch_name, _) in CACHE_DTYPES.items()}


class _FieldFile:
    def __init__(self, path: Path, kind: str, dtype: str, feature_shape: tuple[int, ...]) -> None:
        self.path, self.kind, self.dtype, self.feature_shape = path, kind, dtype, feature_shape
        self.handle: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in finish)
        self.sums = ChunkSums()
        self.rows = 0
        self.bytes = 0

    def write(self, rows: Tensor) -> None:
        data = as_bytes(rows)
        self.handle.write(memoryview(data))
        self.sums.update(memoryview(data))
        self.rows += rows.shape[0]
        self.bytes += data.nbytes

    def finish(self) -> dict[str, Any]:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return dict(kind=self.kind, dtype=self.dtype, feature_shape=list(self.feature_shape), rows=self.rows,
                    file=self.path.name, bytes=self.bytes, **self.sums.finish())


def staging_dir(root: Path, entry_id: str, tag: str = "") -> Path:
    """Create a fresh staging folder for entry ``entry_id`` (``tag``: ``.part<r>of<L>`` for a part, no dashes).

    The name carries the host and process id, so ``remove_stale`` can tell a crashed fill's folder from a live one.
    """
    root.mkdir(parents=True, exist_ok=True)
    nonce = uuid.uuid4().hex[:8]
    staging = root / f"{PARTIAL_PREFIX}{entry_id}{tag}-{socket.gethostname()}-{os.getpid()}-{nonce}"
    staging.mkdir()
    return staging


def write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (last: an entry without one is an unfinished fill) through a renamed temp file."""
    tmp = staging / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, staging / MANIFEST)


def publish(staging: Path, final: Path) -> Path:
    """Rename a sealed staging folder to its entry name (atomic: readers see no entry or a complete one).

    A complete entry already there (a concurrent run, or another node on a shared filesystem, published the
    same key first) wins and ``staging`` is deleted; an invalid leftover is replaced. Returns ``final``.
    """
    if final.exists():
        if check_entry(final, full=False) is None:
            shutil.rmtree(staging, ignore_errors=True)
            return final
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(staging, final)
    except OSError:  # another process renamed its copy between the check and ours
        if check_entry(final, full=False) is not None:
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return final


class EntryWriter:
    """Streams one entry to a staging directory, then publishes it atomically with :meth:`commit`.

    With ``part`` (``{"node", "rank", "of"}``: local rank ``rank`` of ``of`` on ``node``) it writes the part of
    the entry that one rank's share of the fill covers: the index still spans every example id of the split
    (slot -1: not in this part), and :meth:`commit` seals it in its staging folder for ``shards.merge_parts``.
    """

    def __init__(self, root: Path, key: CacheKey, num_examples: int, summary: dict[str, Any], *,
                 part: dict[str, int] | None = None) -> None:
        self.root, self.key, self.summary, self.part = root, key, summary, part
        self.num_examples = num_examples
        tag = f".part{part['rank']}of{part['of']}" if part is not None else ""
        self.staging = staging_dir(root, key.entry_id, tag)
        self.fields: dict[str, _FieldFile] = {}
        self.offsets = np.full(num_examples, -1, dtype=np.int64)
        self.lengths = np.zeros(num_examples, dtype=np.int64)
        self.slots = np.full(num_examples, -1, dtype=np.int64)
        self._next_row = 0
        self._next_slot = 0
        self._started = time.perf_counter()

    def _field(self, name: str, kind: str, rows: Tensor) -> _FieldFile:
        dtype = next(k for k, v in DTYPES.items() if v == rows.dtype)
        shape = tuple(rows.shape[1:])
        field = self.fields.get(name)
        if field is None:
            field = self.fields[name] = _FieldFile(self.staging / f"{name}.bin", kind, dtype, shape)
        elif (field.kind, field.dtype, field.feature_shape) != (kind, dtype, shape):
            raise RunError(f"cache fill: state '{name}' changed layout between batches "
                           f"({field.kind} {field.feature_shape} -> {kind} {shape}); "
                           "this backbone's activations cannot be cached, set cache.enabled=off")
        return field

    def add(self, index: Tensor, ragged: dict[str, Tensor], lengths: Tensor | None, fixed: dict[str, Tensor]) -> None:
        """Append one batch.

        Args:
            index: (B,) example ids within the split.
            ragged: packed ``(sum(lengths), *feature)`` tensors (CPU, storage dtype), examples in ``index`` order.
            lengths: (B,) real tokens per example (None when there are no ragged fields).
            fixed: ``(B, *feature)`` tensors (CPU, storage dtype).
        """
        ids = index.cpu().numpy().astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_examples):
            raise RunError(f"cache fill ({self.key.split}): example index out of range 0..{self.num_examples - 1} "
                           f"(got {int(ids.min())}..{int(ids.max())}); the data collate must give dataset positions")
        if (self.slots[ids] >= 0).any() or len(np.unique(ids)) != len(ids):
            raise RunError(f"cache fill ({self.key.split}): an example was seen twice in one pass; "
                           "the fill loader must visit each example once (no replacement sampling)")
        self.slots[ids] = np.arange(self._next_slot, self._next_slot + len(ids))
        self._next_slot += len(ids)
        if lengths is not None:
            lens = lengths.cpu().numpy().astype(np.int64)
            self.lengths[ids] = lens
            self.offsets[ids] = self._next_row + np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else 0
            self._next_row += int(lens.sum())
        for name, rows in ragged.items():
            self._field(name, "ragged", rows).write(rows)
        for name, rows in fixed.items():
            self._field(name, "fixed", rows).write(rows)

    def commit(self) -> Path:
        """Flush, write the manifest last and publish the entry; returns its final directory (a part: its sealed
        staging folder, published later by ``shards.merge_parts``)."""
        missing = np.flatnonzero(self.slots < 0)
        if missing.size and self.part is None:
            raise RunError(f"cache fill ({self.key.split}): {missing.size} of {self.num_examples} examples never "
                           f"arrived (first ids: {missing[:5].tolist()}); the fill loader must not drop examples")
        index = np.concatenate([np.maximum(self.offsets, 0), self.lengths, self.slots]).astype("<i8")
        (self.staging / INDEX_FILE).write_bytes(index.tobytes())
        index_sums = ChunkSums()
        index_sums.update(index.tobytes())
        fields = {name: f.finish() for name, f in self.fields.items()}
        manifest = dict(
            format=FORMAT_VERSION, id=self.key.entry_id, key=self.key.to_dict(), summary=self.summary,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), fill_seconds=round(time.perf_counter() - self._started, 3),
            num_examples=self.num_examples, fields=fields,
            index=dict(file=INDEX_FILE, bytes=index.nbytes, **index_sums.finish()),
            bytes=sum(f["bytes"] for f in fields.values()) + index.nbytes,
        )
        if self.part is not None:
            manifest["part"] = dict(self.part, examples=self._next_slot)
        write_manifest(self.staging, manifest)
        if self.part is not None:
            return self.staging
        return publish(self.staging, self.root / self.key.entry_id)

    def abort(self) -> None:
        """Close and delete the staging directory (after an error)."""
        for f in self.fields.values():
            if not f.handle.closed:
                f.handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)


def read_manifest(entry: Path) -> dict[str, Any] | None:
    """The entry's manifest, or None when it is missing or unreadable (never written: a crashed fill)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def check_entry(entry: Path, *, full: bool = False) -> str | None:
    """Why an entry is unusable, or None when it is complete.

    Args:
        entry: the entry directory.
        full: also check every chunk of every file against its CRC-32 (reads every byte once: ~0.1 s for
            100 MB from the page cache). Runs do it once per warm entry they open; ``cache ls --verify`` too.

    Returns:
        One line naming the file and, for damaged content, the chunks and byte range.
    """
    manifest = read_manifest(entry)
    if manifest is None:
        return "no manifest (fill did not finish)"
    if manifest.get("format") != FORMAT_VERSION:
        return f"format {manifest.get('format')} (this ftengine reads {FORMAT_VERSION})"
    files = [*manifest["fields"].values(), manifest["index"]]
    for f in files:
        path = entry / f["file"]
        size = path.stat().st_size if path.exists() else -1
        if size != f["bytes"]:
            return f"{f['file']}: {size} bytes, manifest says {f['bytes']} (truncated or modified)"
    for f in files if full else ():
        bad = damaged_chunks(entry / f["file"], f)
        if bad:
            return describe_damage(f["file"], bad, f, int(f["bytes"]))
    return None


def _process_alive(name: str) -> bool:
    # .partial-<entry_id>-<host>-<pid>-<nonce>; the host name may itself contain dashes.
    parts = name[len(PARTIAL_PREFIX):].split("-", 1)[-1].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not a name we write: a leftover
    if parts[0] != socket.gethostname():
        return True  # another machine on a shared filesystem: cannot tell, leave it alone
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_entries(root: Path, *, full: bool = False) -> list[dict[str, Any]]:
    """Every entry and leftover under ``root``: ``dict(path, id, status, problem, manifest)``.

    ``status`` is ``ok``, ``invalid`` (unusable, rebuilt on next use), ``partial`` (a fill in progress)
    or ``stale`` (a crashed fill's staging folder).
    """
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith(PARTIAL_PREFIX):
            status = "partial" if _process_alive(path.name) else "stale"
            out.append(dict(path=path, id=path.name, status=status, problem="fill not finished", manifest=None))
            continue
        problem = check_entry(path, full=full)
        out.append(dict(path=path, id=path.name, status="ok" if problem is None else "invalid", problem=problem,
                        manifest=read_manifest(path)))
    return out


def remove_stale(root: Path) -> int:
    """Delete staging folders of fills whose process is gone; returns how many."""
    gone = [e["path"] for e in list_entries(root) if e["status"] == "stale"]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return len(gone)
