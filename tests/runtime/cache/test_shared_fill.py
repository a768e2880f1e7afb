"""The cache fill split across a node's ranks (CPU, gloo, 2 processes): each rank runs the frozen forward of half
the examples, the merged entries equal one process's, and a second prepare is warm on every rank."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from cache_testing import CsvTextBundle, make_plan, with_cache

from ftengine.runtime.cache import ActivationCache, check_entry
from ftengine.runtime.distributed import World

STAGES = ["freeze.groups_per_stage=1", "freeze.max_unfrozen=2"]  # a 2-layer BERT: stages read boundaries 4, 2, 1
BOUNDARIES = (1, 2, 4)  # after the embeddings (ragged), after layer 0 (ragged), after the pooler (ragged + fixed)
BATCH = 8  # 32 train examples: 4 fill batches, 2 per rank; 8 validation examples: 1 batch, rank 1 gets none
RANKS = 2


def build(bert: Path, csv: Path) -> tuple[Any, CsvTextBundle, Any]:
    from ftengine.backbones.hf import load_hf_backbone

    backbone = load_hf_backbone(str(bert)).eval()
    data = CsvTextBundle(csv, backbone.tokenizer)
    _, graph = make_plan(backbone, STAGES)
    return backbone, data, graph


def counted(module: torch.nn.Module) -> Counter:
    """Examples entering ``module`` (the cost of the frozen forward through it)."""
    seen: Counter = Counter()
    module.register_forward_hook(lambda m, args, out: seen.update(n=(out[0] if isinstance(out, tuple) else out)
                                                                  .shape[0]))
    return seen


def lookups(cache: ActivationCache, data: CsvTextBundle, boundaries: tuple[int, ...]) -> dict[tuple[str, int], Any]:
    return {(s, b): cache.lookup(s, b, torch.arange(len(getattr(data, s))))
            for s in ("train", "validation") for b in boundaries if cache.has(s, b)}


def fail_on_rank_1(rank: int, graph: Any, backbone: Any, data: CsvTextBundle, world: World) -> str:
    """The message each rank stops with when rank 1's fill fails (rank 0's own fill succeeds)."""
    import ftengine.runtime.cache.cache as cache_module
    from ftengine.errors import RunError

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RunError("cache fill at boundary 2: the disk is full")

    if rank == 1:
        cache_module.run_fill = broken
    try:
        ActivationCache.create(graph, backbone, data, device="cpu", world=world).prepare(
            [2], splits=("train",), batch_size=BATCH, quiet=True)
    except RunError as exc:
        return str(exc)
    return "no error"


def rank_main(rank: int, port: int, bert: Path, csv: Path, folder: Path) -> None:
    """One rank: a cold fill, a warm prepare, then a fill resumed from a warm boundary; results to rank<r>.pt."""
    import torch.distributed as dist

    torch.set_num_threads(1)  # two ranks on two cores: the same arithmetic as the one-process reference
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS,
                            timeout=timedelta(seconds=60))
    world = World(rank=rank, size=RANKS, local_rank=rank, local_size=RANKS, backend="gloo", timeout=60)
    try:
        backbone, data, graph = build(bert, csv)
        embedded, layer0 = counted(backbone.get_submodule("embeddings")), counted(backbone.get_submodule(
            "encoder.layer.0"))
        out: dict[str, Any] = {}
        cold = ActivationCache.create(with_cache(graph, dir=str(folder / "cold")), backbone, data, device="cpu",
                                      world=world)
        cold.prepare(BOUNDARIES, batch_size=BATCH, quiet=True)
        out.update(cold=cold.stats(), lookups=lookups(cold, data, BOUNDARIES), embedded=embedded["n"])
        warm = ActivationCache.create(with_cache(graph, dir=str(folder / "cold")), backbone, data, device="cpu",
                                      world=world)
        warm.prepare(BOUNDARIES, batch_size=BATCH, quiet=True)
        out.update(warm=warm.stats(), embedded_after_warm=embedded["n"])
        resumed = with_cache(graph, dir=str(folder / "resumed"))  # boundary 1 warm: 2 and 4 fill from its rows
        ActivationCache.create(resumed, backbone, data, device="cpu", world=world).prepare(
            [1], splits=("train",), batch_size=BATCH, quiet=True)
        before = embedded["n"], layer0["n"]
        cache = ActivationCache.create(resumed, backbone, data, device="cpu", world=world)
        cache.prepare(BOUNDARIES, splits=("train",), batch_size=BATCH, quiet=True)
        out.update(resumed=cache.stats(), resumed_lookups=lookups(cache, data, BOUNDARIES),
                   resumed_embedded=embedded["n"] - before[0], resumed_layer0=layer0["n"] - before[1])
        out["failure"] = fail_on_rank_1(rank, with_cache(graph, dir=str(folder / "failing")), backbone, data, world)
        torch.save(out, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, tiny_bert: Path, tiny_csv: Path) -> list[dict[str, Any]]:
    """What each of the two ranks reported (see ``rank_main``)."""
    folder = tmp_path_factory.mktemp("shared_fill")
    mp.spawn(rank_main, args=(free_port(), tiny_bert, tiny_csv, folder), nprocs=RANKS, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert: Path, tiny_csv: Path) -> dict[tuple[str, int], Any]:
    """One process's lookups of every example (same threads as a rank: the same arithmetic)."""
    backbone, data, graph = build(tiny_bert, tiny_csv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cache = ActivationCache.create(with_cache(graph, dir=str(tmp_path_factory.mktemp("solo"))), backbone, data,
                                       device="cpu")
        cache.prepare(BOUNDARIES, batch_size=BATCH, quiet=True)
        return lookups(cache, data, BOUNDARIES)
    finally:
        torch.set_num_threads(threads)


def filled(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    return {(e["split"], e["boundary"]): e["examples"] for e in stats.get("filled", [])}


def test_each_rank_fills_half_the_examples(ranks):
    train, validation = 32, 8
    for rank, r in enumerate(ranks):
        assert filled(r["cold"]) == {**{("train", b): 16 for b in BOUNDARIES},
                                     **{("validation", b): 8 - 8 * rank for b in BOUNDARIES}}
        assert {e["share"] for e in r["cold"]["filled"]} == {f"{rank}/2"}
        assert r["cold"]["forward_passes"] == {"train": {1: 1, 2: 1, 4: 1}, "validation": {1: 1, 2: 1, 4: 1}}
    # Counted where the frozen forward starts: every example once per node, not once per rank.
    assert [r["embedded"] for r in ranks] == [16 + 8, 16]
    assert sum(r["embedded"] for r in ranks) == train + validation
    merged = [e for r in ranks for e in r["cold"].get("merged", [])]
    assert len(merged) == 6 and all(e["parts"] == 2 for e in merged) and "merged" not in ranks[1]["cold"]


def test_merged_entries_equal_one_process_fill(ranks, reference):
    for r in ranks:
        assert r["lookups"].keys() == reference.keys() and len(reference) == 6
        for key, want in reference.items():
            got = r["lookups"][key]
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), key


def test_merged_entries_pass_the_full_check_and_are_shared(ranks):
    entries = [Path(ranks[0]["cold"]["root"]) / e["id"] for e in ranks[0]["cold"]["entries"]]
    assert len(entries) == 6 and all(check_entry(p, full=True) is None for p in entries)
    assert [p.name for p in entries[0].parent.iterdir() if p.name.startswith(".")] == []  # no part left behind
    for r in ranks:
        assert r["cold"]["root"] == ranks[0]["cold"]["root"] and r["cold"]["tier"] == "disk"
        assert "share it from disk" in r["cold"]["tier_notes"][0]["note"]


def test_second_prepare_is_warm_on_every_rank(ranks):
    for r in ranks:
        assert r["warm"]["forward_passes"] == {} and "filled" not in r["warm"] and len(r["warm"]["warm"]) == 6
        assert r["embedded_after_warm"] == r["embedded"]


def test_fill_resumed_from_a_warm_boundary_is_split_too(ranks, reference):
    for rank, r in enumerate(ranks):
        assert [(e["boundary"], e["start"], e["examples"]) for e in r["resumed"]["filled"]] == [(2, 1, 16), (4, 1, 16)]
        assert r["resumed_embedded"] == 0 and r["resumed_layer0"] == 16  # from boundary 1's rows, its own half
        for b in BOUNDARIES:
            got, want = r["resumed_lookups"][("train", b)], reference[("train", b)]
            # Padding rows enter the resumed forward as zeros, not as embedded pad tokens; they are masked out.
            assert all(torch.allclose(got[k], want[k], rtol=0, atol=1e-6) for k in want), b


def test_a_rank_whose_fill_fails_stops_every_rank(ranks):
    assert ranks[1]["failure"] == "cache fill at boundary 2: the disk is full"
    assert ranks[0]["failure"] == ("activation cache: rank 1 failed filling the activation cache (cache fill at "
                                   "boundary 2: the disk is full); see its output, fix that and run again")
    root = Path(ranks[0]["cold"]["root"]).parents[1] / "failing" / "activations"
    assert list(root.iterdir()) == []  # rank 0's part is deleted, nothing is published
