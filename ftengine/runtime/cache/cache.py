"""ActivationCache: the runtime's entry point to frozen-prefix activation caching.

Life of a cache in a run::

    cache = ActivationCache.create(graph, backbone, data, device=device, run_dir=run_dir)  # settings: graph.cache
    cache.prepare(graph.cache_boundaries())          # warm entries load; missing ones fill in one pass per split
    ... in a stage whose cache point is allowed and cache.has(split, b):
    logits = head(backbone.forward_from(b, cache.lookup(split, b, batch["index"])))
    cache.close()

Entries persist under the cache directory keyed by what they depend on (see ``keys``); a second run of the
same spec finds them complete and fills nothing.

In a data-parallel run (``create(..., world=World)``) every rank calls ``create`` and ``prepare`` (both make
collectives): the ranks of a node agree on what is missing, each fills 1/L of the fill batches into a part,
local rank 0 merges the parts into the entry (``shards``), and every rank loads it. Each example's frozen
forward runs once per node; every node fills its own copy.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ftengine.errors import RunError
from ftengine.planner.graph import CachePlan, ExecutionGraph
from ftengine.runtime.cache.fill import run_fill
from ftengine.runtime.cache.keys import CacheKey, cache_root, prefix_fingerprints
from ftengine.runtime.cache.layout import DTYPES, EntryWriter, check_entry, read_manifest, remove_stale
from ftengine.runtime.cache.loaders import fill_batches, fill_plan
from ftengine.runtime.cache.shards import exchange, merge_parts, node_missing, node_root
from ftengine.runtime.cache.store import ActivationStore
from ftengine.runtime.cache.tiers import plan_tiers, shared_tier, stale_boundaries
from ftengine.runtime.device import fill_dtype
from ftengine.runtime.distributed import World
from ftengine.runtime.progress import warn

SPLITS = ("train", "validation", "test")


class ActivationCache:
    """Cached activations of one run's frozen prefixes, per (split, boundary). Build with :meth:`create`."""

    def __init__(self, graph: ExecutionGraph, backbone: nn.Module, data: Any, *, device: torch.device,
                 root: Path, temporary: bool, compute_dtype: torch.dtype, description: dict[str, str],
                 world: World | None = None) -> None:
        self.settings: CachePlan = graph.cache
        self.world = world or World.solo()
        # bf16 autocast for the fill (cache.fill_precision, `auto` resolved for this device), None: fp32
        self.fill_dtype = fill_dtype(self.settings.fill_precision, device)
        self.graph, self.backbone, self.data = graph, backbone, data
        self.device, self.root, self.temporary = device, root, temporary
        self.compute_dtype, self.description = compute_dtype, description
        self.store_dtype = DTYPES[self.settings.dtype]
        self._data_fp: str | None = None
        self._stores: dict[tuple[str, int], ActivationStore] = {}
        self._passes: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._timing = dict(fill_seconds=0.0, fingerprint_seconds=0.0, load_seconds=0.0)
        self._hits = 0
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(root), True) if temporary else None

    @classmethod
    def create(cls, graph: ExecutionGraph, backbone: nn.Module, data: Any, *, device: torch.device | str,
               run_dir: str | Path | None = None, compute_dtype: torch.dtype = torch.float32,
               description: dict[str, str] | None = None, world: World | None = None) -> ActivationCache | None:
        """A cache for this run, or None when no stage may cache or ``cache.enabled`` is off.

        Args:
            graph: the planner's ExecutionGraph: its stage cache points, and ``graph.cache`` (dtype, tier, budget,
                folder, persistence), the only settings the cache reads.
            backbone: the Backbone, with its weights, on ``device``.
            data: the DataBundle (per-split datasets, collate with ``index``, ``fingerprint()``).
            device: where lookups return batches.
            run_dir: the run directory; with ``cache.persist: false`` entries live in ``<run_dir>/activation-cache``
                until :meth:`close` (so a resumed run after a crash reuses them).
            compute_dtype: element type of looked-up batches (fp32 on CPU).
            description: ``spec``/``model`` labels shown by ``ftengine cache ls``.
            world: a data-parallel run's ranks (None: one process). Every rank must call ``create`` (and then
                ``prepare``): a node's ranks agree on one cache folder, their node's local rank 0's.
        """
        settings = graph.cache
        if settings.enabled == "off" or not any(s.cache.allowed for s in graph.stages):
            return None
        if settings.persist:
            root, temporary = cache_root(settings.dir), False
        elif run_dir is not None:
            root, temporary = Path(run_dir) / "activation-cache", False
        else:
            root, temporary = Path(tempfile.mkdtemp(prefix="ftengine-cache-")), True
        world = world or World.solo()
        if world.distributed:
            root, temporary = node_root(world, root, temporary)
        info = getattr(backbone, "info", {}) or {}
        labels = {"spec": Path(run_dir).name if run_dir else "", "model": str(info.get("source") or info.get("arch")
                  or type(backbone).__name__)}
        labels.update(description or {})
        return cls(graph, backbone, data, device=torch.device(device), root=root, temporary=temporary,
                   compute_dtype=compute_dtype, description=labels, world=world)

    # --- filling ---------------------------------------------------------------------------------------------

    def _key(self, split: str, boundary: int, prefix: str) -> CacheKey:
        if self._data_fp is None:
            self._data_fp = str(self.data.fingerprint())
        return CacheKey(prefix=prefix, boundary=boundary, data=self._data_fp, split=split, dtype=self.settings.dtype,
                        fill="bf16" if self.fill_dtype is not None else "fp32")

    def _summary(self, split: str, boundary: int, examples: int) -> dict[str, Any]:
        name = self.backbone.groups[boundary - 1].name  # the last frozen group: activations leaving it
        return dict(self.description, split=split, boundary=boundary, boundary_name=name, dtype=self.settings.dtype,
                    lossy=self.settings.dtype != "fp32", examples=examples)

    def prepare(self, boundaries: Sequence[int], splits: Sequence[str] = SPLITS, batch_size: int = 64,
                quiet: bool = False, *, stage: int = 0) -> None:
        """Make every (split, boundary) available: load complete persisted entries, fill the rest.

        One forward pass per split through the frozen prefix stores all missing boundaries (see ``fill``);
        warm entries cost no forward at all.

        Args:
            boundaries: boundaries later stages read (``graph.cache_boundaries()``).
            splits: splits to cache (absent ones are skipped).
            batch_size: fill batch size.
            quiet: no progress bar.
            stage: first stage still to run (a resumed run). Not filled: a boundary whose prefix trains in a
                stage from here on before a later stage reads it (its activations would go stale), and one that
                only stages before ``stage`` read.
        """
        n_groups = len(self.backbone.groups)
        wanted = sorted({int(b) for b in boundaries})
        bad = [b for b in wanted if not 0 < b <= n_groups]
        if bad:
            raise ValueError(f"cache boundaries must be in 1..{n_groups} (got {bad})")
        stale = stale_boundaries(self.graph, wanted, stage)
        for b, reason in stale.items():
            self._events["skipped"].append(dict(boundary=b, reason=reason))
        wanted = [b for b in wanted if b not in stale]
        if not wanted:
            return
        started = time.perf_counter()
        prefixes = prefix_fingerprints(self.backbone, wanted)
        self._timing["fingerprint_seconds"] += time.perf_counter() - started
        remove_stale(self.root)
        jobs: list[tuple[str, Any, dict[int, CacheKey]]] = []
        for split in splits:
            dataset = getattr(self.data, split, None)
            mine = self._split_boundaries(split, wanted)
            if dataset is not None and len(dataset) > 0 and mine:
                jobs.append((split, dataset, {b: self._key(split, b, prefixes[b]) for b in mine}))
        missing = {split: self._missing(split, keys) for split, _, keys in jobs}
        anyone = any(missing.values())
        if self.world.distributed:  # every rank of a node fills the same set, or the parts would not fit
            ids = {(split, b): k.entry_id for split, _, keys in jobs for b, k in keys.items()}
            missing, anyone = node_missing(self.world, missing, ids)
        for split, _, keys in jobs:
            for b, k in keys.items():
                if b not in missing[split]:
                    self._events["warm"].append(dict(split=split, boundary=b, id=k.entry_id))
        if self.world.distributed and anyone:
            self._fill_shared(jobs, missing, batch_size, quiet)
        elif anyone:
            for split, dataset, keys in jobs:
                if missing[split]:
                    self._fill_split(split, dataset, keys, missing[split], batch_size, quiet)
        self._load({(split, b): self.root / k.entry_id for split, _, keys in jobs for b, k in keys.items()})

    def _split_boundaries(self, split: str, wanted: list[int]) -> list[int]:
        """The boundaries ``split`` is filled at. Training and validation: every wanted one. Test: only the last
        stage's. The test split is read once, after training, and a boundary that only earlier stages read has been
        released by then, so its test activations would be computed and dropped unread. The quickstart has 528
        test tweets; skipping them at the head's boundary saves their forward pass through layers 3-5."""
        if split != "test":
            return wanted
        last = self.graph.stages[-1].cache if self.graph.stages else None
        return [b for b in wanted if last is not None and last.allowed and b == last.boundary]

    def _missing(self, split: str, keys: dict[int, CacheKey]) -> list[int]:
        """Boundaries of ``split`` with no complete entry (a damaged one is removed and counts as missing)."""
        missing: list[int] = []
        for b, key in keys.items():
            path = self.root / key.entry_id
            # Checksums too: an entry this run did not fill may have been damaged on disk since (once per open).
            # One rank per node reads every byte; the others' sizes check suffices, since a node fills what any of
            # its ranks finds missing.
            problem = check_entry(path, full=self.world.local_rank == 0) if path.exists() else "absent"
            if problem is None:
                continue
            missing.append(b)
            if problem != "absent":
                self._events["rebuilt"].append(dict(split=split, boundary=b, id=key.entry_id, reason=problem))
                warn(f"activation cache entry {key.entry_id[:12]} ({split}, boundary {b}): {problem}; "
                      "removed, filling it again")
                shutil.rmtree(path, ignore_errors=True)
        return missing

    def _fill_split(self, split: str, dataset: Any, keys: dict[int, CacheKey], missing: list[int], batch_size: int,
                    quiet: bool) -> dict[tuple[str, int], str]:
        """One forward pass over this rank's share of ``split``, writing every missing boundary.

        Returns:
            (split, boundary) -> the sealed part's folder, when this node's ranks share the fill (else the entries
            are published and nothing is returned).
        """
        # Resume the forward from the highest lossless warm boundary below everything missing.
        below = [b for b in keys if b not in missing and b < min(missing)] if self.settings.dtype == "fp32" else []
        start = max(below, default=0)
        start_store = (ActivationStore.open(self.root / keys[start].entry_id, tier="disk", device=self.device,
                                            compute_dtype=torch.float32) if start else None)
        share = (self.world.local_rank, self.world.local_size)
        part = dict(node=self.world.node, rank=share[0], of=share[1]) if share[1] > 1 else None
        plan = fill_plan(self.data, split, batch_size, share)
        writers = {b: EntryWriter(self.root, keys[b], len(dataset), self._summary(split, b, len(dataset)), part=part)
                   for b in missing}
        started = time.perf_counter()
        try:
            with _progress(sum(map(len, plan)), f"caching {split} activations", quiet) as bar:
                seen = run_fill(self.backbone, fill_batches(self.data, split, batch_size, plan), writers,
                                device=self.device, store_dtype=self.store_dtype, start=start,
                                start_store=start_store, progress=bar, compute_dtype=self.fill_dtype)
            sealed = {(split, b): str(writer.commit()) for b, writer in writers.items()}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        finally:
            if start_store is not None:
                start_store.close()
        self._timing["fill_seconds"] += time.perf_counter() - started
        for b in missing:
            self._passes[split][b] += 1
            # examples: this rank's own count (its share of the split when the node's ranks share the fill).
            event = dict(split=split, boundary=b, id=keys[b].entry_id, start=start, examples=seen)
            self._events["filled"].append(event if part is None else dict(event, share=f"{share[0]}/{share[1]}"))
        return sealed if part is not None else {}

    def _fill_shared(self, jobs: list[tuple[str, Any, dict[int, CacheKey]]], missing: dict[str, list[int]],
                     batch_size: int, quiet: bool) -> None:
        """Data-parallel fill: this rank's share of every missing entry, then local rank 0 merges each entry's
        parts and publishes it. A failure on any rank is raised on every rank (none waits for the others)."""
        world, parts, failure = self.world, {}, None
        try:
            for split, dataset, keys in jobs:
                if missing[split]:
                    parts.update(self._fill_split(split, dataset, keys, missing[split], batch_size, quiet))
        except Exception as exc:  # told to the other ranks below, then raised here
            failure = exc
        try:
            everyone = exchange(world, parts, failure, "filling the activation cache")
        except BaseException:
            for folder in parts.values():
                shutil.rmtree(folder, ignore_errors=True)
            raise
        started, failure = time.perf_counter(), None
        if world.local_rank == 0 and parts:
            node = [e["payload"] for e in sorted(everyone, key=lambda e: e["local_rank"]) if e["node"] == world.node]
            try:
                for split, b in sorted(parts):
                    merged = merge_parts([Path(folders[(split, b)]) for folders in node], self.root)
                    self._events["merged"].append(dict(split=split, boundary=b, id=merged.name, parts=len(node)))
            except Exception as exc:
                failure = exc
        self._timing["fill_seconds"] += time.perf_counter() - started
        exchange(world, {}, failure, "merging the activation cache's parts")

    def _load(self, paths: dict[tuple[str, int], Path]) -> None:
        started = time.perf_counter()
        sizes = {k: int((read_manifest(p) or {}).get("bytes", 0)) for k, p in paths.items()}
        uses = {b: sum(s.epochs for s in self.graph.stages if s.cache.allowed and s.cache.boundary == b)
                for _, b in paths}
        tier, shared_note = shared_tier(self.settings.tier, self.device, self.world.local_size)
        # Entries loaded by an earlier prepare() keep their share of the memory budget.
        held = sum(st.nbytes for k, st in self._stores.items() if st.tier != "disk" and k not in paths)
        tiers = plan_tiers(sizes, uses, tier, max(0, self.settings.budget_mb * 2**20 - held), self.device)
        for k, path in paths.items():
            tier, note = tiers[k]
            note = note or shared_note
            try:
                store = ActivationStore.open(path, tier=tier, device=self.device, compute_dtype=self.compute_dtype)
                if k in self._stores:  # loaded again by a later prepare()
                    self._stores[k].close()
                self._stores[k] = store
            except RunError as exc:  # damaged between fill and load (another process?): say so, run uncached
                self._events["unusable"].append(dict(split=k[0], boundary=k[1], reason=str(exc)))
                continue
            if note:
                self._events["tier_notes"].append(dict(split=k[0], boundary=k[1], note=note))
        self._timing["load_seconds"] += time.perf_counter() - started

    # --- reading ---------------------------------------------------------------------------------------------

    def has(self, split: str, boundary: int) -> bool:
        """Whether lookups for ``split`` at ``boundary`` are served from the cache."""
        return (split, boundary) in self._stores

    def lookup(self, split: str, boundary: int, index: Tensor) -> dict[str, Tensor]:
        """State entering ``boundary`` for examples ``index`` of ``split``: for ``backbone.forward_from(boundary, .)``.

        Padded to the batch's longest example with ``attention_mask`` (text), in the compute dtype, on ``device``.

        Raises:
            KeyError: nothing cached there (check :meth:`has`).
        """
        store = self._stores.get((split, boundary))
        if store is None:
            cached = ", ".join(f"{s}@{b}" for s, b in sorted(self._stores)) or "nothing"
            raise KeyError(f"activation cache: no entry for split '{split}' at boundary {boundary} (cached: {cached})")
        self._hits += 1
        return store.lookup(index)

    def release(self, boundary: int) -> None:
        """Drop the loaded entries of ``boundary`` (a finished stage's), freeing their memory tier."""
        for key in [k for k in self._stores if k[1] == boundary]:
            self._stores.pop(key).close()

    def stats(self) -> dict[str, Any]:
        """What the cache holds and did: tier, dtype, bytes, boundaries, fill time, forward passes, hits."""
        entries = [dict(split=s, boundary=b, tier=st.tier, bytes=st.nbytes, examples=st.num_examples,
                        id=st.path.name) for (s, b), st in sorted(self._stores.items())]
        tiers = sorted({e["tier"] for e in entries})
        passes = {split: dict(sorted(v.items())) for split, v in self._passes.items()}
        return dict(
            tier=tiers[0] if len(tiers) == 1 else ("mixed" if tiers else "none"),
            dtype=self.settings.dtype, lossy=self.settings.dtype != "fp32", compute_dtype=str(self.compute_dtype),
            fill_precision="bf16" if self.fill_dtype is not None else "fp32",
            bytes=sum(e["bytes"] for e in entries), boundaries=sorted({e["boundary"] for e in entries}),
            fill_seconds=round(self._timing["fill_seconds"], 3),
            fingerprint_seconds=round(self._timing["fingerprint_seconds"], 3),
            load_seconds=round(self._timing["load_seconds"], 3),
            forward_passes_per_boundary=dict(passes.get("train", {})), forward_passes=passes, hits=self._hits,
            entries=entries, root=str(self.root), persist=not self.temporary and bool(self.settings.persist),
            **{k: list(v) for k, v in self._events.items()},
        )

    def summary(self) -> str:
        """One line for run logs: what is cached where, lossy or not, what was filled or reused."""
        st = self.stats()
        kind = "lossless" if not st["lossy"] else "lossy: activations rounded"
        where = ", ".join(f"{e['split']}@{e['boundary']}" for e in st["entries"]) or "nothing"
        filled = f"filled {len(st.get('filled', []))} in {st['fill_seconds']:.1f}s" if st.get("filled") else "filled 0"
        return (f"activation cache: {where}; {st['bytes'] / 2**20:.1f} MiB on {st['tier']}, {st['dtype']} ({kind}); "
                f"{filled}, reused {len(st.get('warm', []))}, skipped {len(st.get('skipped', []))}")

    def close(self) -> None:
        """Release loaded entries; delete them too unless they persist across runs."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if not self.settings.persist and self.world.local_rank == 0:  # the node's other ranks share this folder
            shutil.rmtree(self.root, ignore_errors=True)
        if self._finalizer is not None:
            self._finalizer()




class _NullBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, desc: str, quiet: bool) -> Any:
    if quiet:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False)
