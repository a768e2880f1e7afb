"""Joining the parts of a cache entry that a node's ranks filled side by side into the entry itself.

In a data-parallel run, local rank ``r`` of ``L`` fills the fill batches ``j`` with ``j % L == r`` into a part
(see ``layout.EntryWriter(part=...)``): its field files hold the rows of its own examples in fill order, and its
index spans every example id of the split with slot -1 for the ids another rank filled. Local rank 0 then
merges the ``L`` parts: each field file is the parts' files back to back (a byte copy, no forward pass), the
index shifts every part's offsets and slots by the rows and examples of the parts before it, and the
checksums are computed while copying. The merged entry is then published like any fill's: lookups by
example id cannot tell which rank filled which row.

The functions at the end are the ranks' agreements around that (which folder, what to fill, who failed):
each is one ``gather_objects`` of a few small Python objects.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftengine.errors import RunError
from ftengine.runtime.cache.integrity import ChunkSums
from ftengine.runtime.cache.keys import FORMAT_VERSION
from ftengine.runtime.cache.layout import INDEX_FILE, check_entry, publish, read_manifest, staging_dir, write_manifest
from ftengine.runtime.distributed import World

COPY_BYTES = 16 << 20
"""Bytes copied per read while merging (a few chunks of the checksums: the per-call overhead vanishes)."""


def _read_parts(parts: Sequence[Path]) -> list[dict[str, Any]]:
    """Every part's manifest, checked to be the sealed parts 0..L-1 of one entry."""
    manifests = []
    for i, path in enumerate(parts):
        problem = check_entry(path, full=False)
        manifest = read_manifest(path)
        if problem is not None or manifest is None or "part" not in manifest:
            raise RunError(f"activation cache merge: part {i} ({path.name}) is not a sealed part "
                           f"({problem or 'no part record'}); delete the cache folder's .partial-* folders and run "
                           "again")
        manifests.append(manifest)
    first = manifests[0]
    for i, m in enumerate(manifests):
        if (m["id"], m["num_examples"], m["part"]["rank"], m["part"]["of"]) != (
                first["id"], first["num_examples"], i, len(parts)):
            raise RunError(f"activation cache merge: part {i} is {m['part']['rank']}/{m['part']['of']} of entry "
                           f"{m['id'][:12]}, expected {i}/{len(parts)} of {first['id'][:12]}; this is a bug in the "
                           "data-parallel cache fill, run with cache.enabled=off meanwhile")
    return manifests


def _field_layouts(manifests: list[dict[str, Any]]) -> dict[str, tuple[str, str, list[int]]]:
    """Field name -> (kind, dtype, feature_shape), the same in every part that filled examples."""
    layouts: dict[str, tuple[str, str, list[int]]] = {}
    for i, m in enumerate(manifests):
        if m["part"]["examples"] == 0:
            continue  # a rank whose share had no batch (fewer batches than ranks) wrote no field file
        have = {name: (f["kind"], f["dtype"], list(f["feature_shape"])) for name, f in m["fields"].items()}
        if layouts and have != layouts:
            raise RunError(f"activation cache merge: part {i} stores {sorted(have.items())}, part 0 "
                           f"{sorted(layouts.items())}; the backbone's boundary state differs between ranks, "
                           "set cache.enabled=off")
        layouts = layouts or have
    return layouts


def _merged_index(indexes: list[np.ndarray], split: str) -> tuple[np.ndarray, list[int], list[int]]:
    """The entry's (3, N) index from the parts' (offsets, lengths, slots), and each part's (rows, examples)."""
    n = indexes[0].shape[1]
    covered = sum((ix[2] >= 0).astype(np.int64) for ix in indexes)
    wrong = np.flatnonzero(covered != 1)
    if wrong.size:
        raise RunError(f"activation cache merge ({split}): {wrong.size} of {n} example ids are filled "
                       f"{int(covered[wrong[0]])} times instead of once (first ids: {wrong[:5].tolist()}); the ranks' "
                       "fill shares must cover the split exactly once, run with cache.enabled=off meanwhile")
    merged = np.zeros((3, n), dtype=np.int64)
    rows: list[int] = []
    examples: list[int] = []
    for ix in indexes:
        have = ix[2] >= 0
        merged[0, have] = ix[0, have] + sum(rows)  # ragged rows of the parts before this one
        merged[1, have] = ix[1, have]
        merged[2, have] = ix[2, have] + sum(examples)  # fixed rows (one per example) likewise
        rows.append(int(ix[1, have].sum()))
        examples.append(int(have.sum()))
    return merged, rows, examples


def _concatenate(sources: list[Path], target: Path) -> dict[str, Any]:
    """Copy ``sources`` back to back into ``target``; its size and per-chunk checksums (``integrity``)."""
    sums = ChunkSums()
    buffer = bytearray(COPY_BYTES)
    view = memoryview(buffer)
    total = 0
    with open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as f:
                while n := f.readinto(buffer):
                    out.write(view[:n])
                    sums.update(view[:n])
                    total += n
        out.flush()
        os.fsync(out.fileno())
    return dict(bytes=total, **sums.finish())


def merge_parts(parts: Sequence[Path], root: Path) -> Path:
    """Join the sealed parts 0..L-1 of one entry into the entry under ``root``, publish it, delete the parts.

    Every example id must be in exactly one part. A complete entry with the same id already published (another
    node sharing the filesystem merged first) is kept and this merge discarded.

    Returns:
        The published entry's directory.

    Raises:
        RunError: the parts do not fit together (different entries, layouts, or ids covered twice or never).
    """
    started = time.perf_counter()
    manifests = _read_parts(parts)
    first = manifests[0]
    n, split = int(first["num_examples"]), first["key"]["split"]
    layouts = _field_layouts(manifests)
    indexes = [np.fromfile(p / INDEX_FILE, dtype="<i8").astype(np.int64).reshape(3, n) for p in parts]
    index, rows, examples = _merged_index(indexes, split)
    staging = staging_dir(root, first["id"])
    try:
        fields = {}
        for name, (kind, dtype, shape) in layouts.items():
            sources = [p / m["fields"][name]["file"] for p, m in zip(parts, manifests, strict=True)
                       if name in m["fields"]]
            want = sum(rows) if kind == "ragged" else sum(examples)
            got = sum(int(m["fields"][name]["rows"]) for m in manifests if name in m["fields"])
            if got != want:
                raise RunError(f"activation cache merge ({split}): field '{name}' has {got} rows in its parts, the "
                               f"index says {want}; delete the cache folder's .partial-* folders and run again")
            record = _concatenate(sources, staging / f"{name}.bin")
            fields[name] = dict(kind=kind, dtype=dtype, feature_shape=shape, rows=want, file=f"{name}.bin", **record)
        data = index.reshape(-1).astype("<i8").tobytes()
        (staging / INDEX_FILE).write_bytes(data)
        index_sums = ChunkSums()
        index_sums.update(data)
        manifest = dict(
            format=FORMAT_VERSION, id=first["id"], key=first["key"], summary=first["summary"],
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # The parts filled side by side: the entry took the slowest part's time, plus this merge.
            fill_seconds=round(max(m["fill_seconds"] for m in manifests) + time.perf_counter() - started, 3),
            num_examples=n, fields=fields, index=dict(file=INDEX_FILE, bytes=len(data), **index_sums.finish()),
            bytes=sum(f["bytes"] for f in fields.values()) + len(data), filled_by=len(parts),
        )
        write_manifest(staging, manifest)
        final = publish(staging, root / first["id"])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
    return final


# --- the ranks' agreements (collectives; a one-process run never calls these) --------------------------------


def node_root(world: World, root: Path, temporary: bool) -> tuple[Path, bool]:
    """The cache folder of this node's local rank 0, which all its ranks use, and whether this rank deletes it.

    Ranks agree even where their own choices differ (a temporary folder is made per process): a folder made
    here that the node does not use is deleted at once.
    """
    everyone = world.gather_objects((world.node, world.local_rank, str(root), temporary),
                                    what="agreeing on the activation cache folder")
    leader = next(((Path(r), t) for node, local, r, t in everyone if node == world.node and local == 0), None)
    if leader is None:
        raise RunError(f"distributed: node {world.node} has no local rank 0 (ranks report {everyone}); start the run "
                       "with torchrun, which numbers each node's ranks from 0")
    if leader[0] != root and temporary:
        shutil.rmtree(root, ignore_errors=True)
    return leader[0], leader[1] and world.local_rank == 0


def node_missing(world: World, missing: dict[str, list[int]],
                 ids: dict[tuple[str, int], str]) -> tuple[dict[str, list[int]], bool]:
    """What this node fills: a boundary missing on any of its ranks (so a race cannot split them), and whether
    any node fills anything (then every rank takes part in the exchanges after the fill).

    Raises:
        RunError: the ranks' entry ids differ (they read different data or frozen weights).
    """
    everyone = world.gather_objects(dict(node=world.node, missing=missing, ids=ids),
                                    what="agreeing on the activation cache entries to fill")
    for rank, e in enumerate(everyone):
        differ = sorted(k for k in ids if e["ids"].get(k) != everyone[0]["ids"].get(k))
        if differ:
            (split, b) = differ[0]
            raise RunError(f"activation cache: rank {rank}'s entry for {split} at boundary {b} is "
                           f"{e['ids'].get(differ[0])}, rank 0's {everyone[0]['ids'].get(differ[0])} (their frozen "
                           "weights or data differ); every rank must read the same data files and model")
    mine = [e for e in everyone if e["node"] == world.node]
    agreed = {split: sorted({b for e in mine for b in e["missing"].get(split, [])}) for split in missing}
    return agreed, any(b for e in everyone for bs in e["missing"].values() for b in bs)


def exchange(world: World, payload: Any, failure: BaseException | None, what: str) -> list[dict[str, Any]]:
    """Every rank's ``payload`` with its node and local rank (rank order), after a step that may have failed.

    Raises:
        The rank's own ``failure``; else a RunError naming the first rank that failed, so every rank stops.
    """
    error = None if failure is None else (str(failure).strip().splitlines() or [type(failure).__name__])[0][:300]
    everyone = world.gather_objects(dict(node=world.node, local_rank=world.local_rank, payload=payload, error=error),
                                    what=what)
    if failure is not None:
        raise failure
    failed = [(rank, e["error"]) for rank, e in enumerate(everyone) if e["error"] is not None]
    if failed:
        rank, error = failed[0]
        raise RunError(f"activation cache: rank {rank} failed {what} ({error}); see its output, fix that and run "
                       "again")
    return everyone
