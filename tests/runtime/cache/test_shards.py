"""Merging the parts a node's ranks filled into one entry: a byte copy that equals one writer's entry."""

from __future__ import annotations

import pytest
import torch

from ftengine.errors import RunError
from ftengine.runtime.cache.keys import CacheKey
from ftengine.runtime.cache.layout import INDEX_FILE, PARTIAL_PREFIX, EntryWriter, check_entry, list_entries
from ftengine.runtime.cache.shards import exchange, merge_parts, node_missing
from ftengine.runtime.cache.store import ActivationStore
from ftengine.runtime.distributed import World

KEY = CacheKey(prefix="p" * 64, boundary=2, data="d" * 64, split="train", dtype="fp32")
LENGTHS = (3, 1, 4, 2, 5)
WIDTH = 6


def rows():
    """Per-example ragged rows (length x WIDTH) and a pooled vector, fixed by a seed."""
    gen = torch.Generator().manual_seed(0)
    hidden = [torch.randn(n, WIDTH, generator=gen) for n in LENGTHS]
    pooled = [torch.randn(WIDTH, generator=gen) for _ in LENGTHS]
    return hidden, pooled


def write(root, batches, part=None):
    """An entry (or a part of one) holding ``batches`` of example ids, written in that order."""
    hidden, pooled = rows()
    writer = EntryWriter(root, KEY, len(LENGTHS), {"split": "train"}, part=part)
    for batch in batches:
        writer.add(torch.tensor(batch, dtype=torch.long), {"hidden": torch.cat([hidden[i] for i in batch])},
                   torch.tensor([LENGTHS[i] for i in batch]), {"pooled": torch.stack([pooled[i] for i in batch])})
    return writer.commit()


def parts(root, shares):
    return [write(root, batches, dict(node=0, rank=r, of=len(shares))) for r, batches in enumerate(shares)]


def test_merged_entry_equals_one_writers_entry(tmp_path):
    # Rank 0 filled fill batches 0 and 2, rank 1 batch 1 (j % 2 == r), so the merge lays out 0, 2, 1.
    shares = [[[4, 1], [0]], [[3, 2]]]
    sealed = parts(tmp_path / "node", shares)
    assert all(p.name.startswith(PARTIAL_PREFIX) and f".part{r}of2-" in p.name for r, p in enumerate(sealed))
    assert {e["status"] for e in list_entries(tmp_path / "node")} == {"partial"}  # a live fill, never an entry
    merged = merge_parts(sealed, tmp_path / "node")
    whole = write(tmp_path / "one", [[4, 1], [0], [3, 2]])

    assert merged == tmp_path / "node" / KEY.entry_id and check_entry(merged, full=True) is None
    assert [p.name for p in (tmp_path / "node").iterdir()] == [KEY.entry_id]  # the parts are gone
    for name in ("hidden.bin", "pooled.bin", INDEX_FILE):  # byte for byte what one process writes
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    ids = torch.tensor([2, 0, 4, 1, 3])
    got = ActivationStore.open(merged, tier="disk", device="cpu").lookup(ids)
    want = ActivationStore.open(whole, tier="host", device="cpu").lookup(ids)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_rank_with_no_batch_adds_nothing(tmp_path):
    sealed = parts(tmp_path, [[[0, 1, 2, 3, 4]], []])  # one fill batch, two ranks
    merged = merge_parts(sealed, tmp_path)
    assert check_entry(merged, full=True) is None
    hidden, pooled = rows()
    state = ActivationStore.open(merged, tier="host", device="cpu").lookup(torch.tensor([2]))
    assert torch.equal(state["hidden"][0], hidden[2]) and torch.equal(state["pooled"][0], pooled[2])


@pytest.mark.parametrize("shares, count", [([[[0, 1, 2]], [[2, 3, 4]]], "2 times"),
                                           ([[[0, 1]], [[3, 4]]], "0 times")])
def test_every_id_is_covered_exactly_once(tmp_path, shares, count):
    sealed = parts(tmp_path, shares)
    with pytest.raises(RunError, match=f"1 of 5 example ids are filled {count} instead of once \\(first ids: \\[2\\]"):
        merge_parts(sealed, tmp_path)
    assert not (tmp_path / KEY.entry_id).exists()
    assert all(p.exists() for p in sealed)  # left for the run's clean-up; nothing half-merged is published


def test_parts_out_of_order_are_refused(tmp_path):
    sealed = parts(tmp_path, [[[0, 1]], [[2, 3, 4]]])
    with pytest.raises(RunError, match="part 0 is 1/2 of entry .*, expected 0/2"):
        merge_parts(sealed[::-1], tmp_path)


def test_an_entry_published_first_is_kept(tmp_path):
    first = write(tmp_path, [[0, 1, 2, 3, 4]])  # another node on the same filesystem merged first
    before = (first / "manifest.json").read_text()
    merged = merge_parts(parts(tmp_path, [[[0, 1]], [[2, 3, 4]]]), tmp_path)
    assert merged == first and (first / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [KEY.entry_id]


def world_seeing(*others):
    """Rank 0 of a 3-rank run (ranks 0 and 1 on node 0, rank 2 on node 1) whose gathers return its object
    followed by ``others`` (what ranks 1 and 2 sent)."""
    world = World(rank=0, size=3, local_rank=0, local_size=2, node=0, backend="gloo")
    world.gather_objects = lambda obj, what="": [obj, *others]
    return world


def test_a_node_fills_what_any_of_its_ranks_misses():
    ids = {("train", 3): "a", ("train", 5): "b"}
    # Rank 1 (same node) found boundary 5 missing, rank 0 found it complete (a race): both fill it.
    # Rank 2 (another node, another disk) misses 3: that is its node's business.
    world = world_seeing(dict(node=0, missing={"train": [5]}, ids=ids), dict(node=1, missing={"train": [3]}, ids=ids))
    assert node_missing(world, {"train": []}, ids) == ({"train": [5]}, True)
    idle = world_seeing(dict(node=0, missing={"train": []}, ids=ids), dict(node=1, missing={"train": [3]}, ids=ids))
    assert node_missing(idle, {"train": []}, ids) == ({"train": []}, True)  # still takes part in the exchanges


def test_ranks_with_different_entries_stop():
    ids = {("train", 3): "a"}
    world = world_seeing(dict(node=0, missing={}, ids={("train", 3): "z"}), dict(node=1, missing={}, ids=ids))
    with pytest.raises(RunError, match="rank 1's entry for train at boundary 3 is z, rank 0's a .*same data files"):
        node_missing(world, {"train": []}, ids)


def test_a_failure_on_one_rank_stops_every_rank():
    world = world_seeing(dict(node=0, local_rank=1, payload={}, error="cache fill at boundary 3: boom"),
                         dict(node=1, local_rank=0, payload={}, error=None))
    with pytest.raises(RunError, match=r"rank 1 failed filling \(cache fill at boundary 3: boom\)"):
        exchange(world, {}, None, "filling")
    with pytest.raises(ValueError, match="mine"):  # the failing rank raises its own error, after telling the others
        exchange(world_seeing(), {}, ValueError("mine"), "filling")
