"""Entry files: atomic publication, damage detection, leftovers of crashed fills."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from ftengine.errors import RunError
from ftengine.runtime.cache.keys import CacheKey
from ftengine.runtime.cache.layout import PARTIAL_PREFIX, EntryWriter, check_entry, list_entries, remove_stale
from ftengine.runtime.cache.store import ActivationStore

KEY = CacheKey(prefix="p" * 64, boundary=3, data="d" * 64, split="train", dtype="fp32")


def write_entry(root, key=KEY, lengths=(3, 1, 4), width=5):
    """Three examples written in the order 2, 0, 1 (as a length-sorted fill would)."""
    gen = torch.Generator().manual_seed(0)
    hidden = {i: torch.randn(n, width, generator=gen) for i, n in enumerate(lengths)}
    pooled = {i: torch.randn(width, generator=gen) for i in range(len(lengths))}
    writer = EntryWriter(root, key, len(lengths), {"split": key.split})
    for batch in ([2], [0, 1]):
        writer.add(torch.tensor(batch), {"hidden": torch.cat([hidden[i] for i in batch])},
                   torch.tensor([lengths[i] for i in batch]), {"pooled": torch.stack([pooled[i] for i in batch])})
    return writer.commit(), hidden, pooled


def test_round_trip_by_example_id(tmp_path):
    path, hidden, pooled = write_entry(tmp_path)
    assert path == tmp_path / KEY.entry_id and check_entry(path) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    for tier in ("host", "disk"):
        store = ActivationStore.open(path, tier=tier, device="cpu")
        state = store.lookup(torch.tensor([1, 2, 0]))
        assert state["hidden"].shape == (3, 4, 5)
        assert torch.equal(state["attention_mask"], torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]))
        for row, i in enumerate([1, 2, 0]):
            n = hidden[i].shape[0]
            assert torch.equal(state["hidden"][row, :n], hidden[i])
            assert not state["hidden"][row, n:].any()  # padding is zeros, never stored
            assert torch.equal(state["pooled"][row], pooled[i])


def test_storage_holds_real_tokens_only(tmp_path):
    path, _, _ = write_entry(tmp_path, lengths=(3, 1, 4), width=5)
    assert (path / "hidden.bin").stat().st_size == (3 + 1 + 4) * 5 * 4  # sum_len x H x fp32, no padding


def test_truncated_file_is_detected(tmp_path):
    path, _, _ = write_entry(tmp_path)
    with open(path / "hidden.bin", "r+b") as f:
        f.truncate(40)
    assert "hidden.bin: 40 bytes, manifest says 160" in check_entry(path)
    with pytest.raises(RunError, match="it will be rebuilt"):
        ActivationStore.open(path, tier="host", device="cpu")


def test_modified_bytes_need_full_verification(tmp_path):
    path, _, _ = write_entry(tmp_path)
    with open(path / "hidden.bin", "r+b") as f:
        f.write(b"\x00\x01\x02\x03")
    assert check_entry(path) is None  # same size: the quick check passes
    assert check_entry(path, full=True) == ("hidden.bin: chunk 0 of 1 (bytes 0 B..160 B) does not match its "
                                            "checksum (corrupted on disk)")


def test_crash_mid_fill_publishes_nothing(tmp_path):
    writer = EntryWriter(tmp_path, KEY, 3, {})
    writer.add(torch.tensor([0]), {"hidden": torch.ones(2, 4)}, torch.tensor([2]), {})
    # The process dies here: no commit. Nothing under the entry's name, one staging folder.
    assert not (tmp_path / KEY.entry_id).exists()
    (entry,) = list_entries(tmp_path)
    assert entry["status"] == "partial"  # its process (this one) is alive
    assert remove_stale(tmp_path) == 0
    dead = tmp_path / f"{PARTIAL_PREFIX}{KEY.entry_id}-{socket.gethostname()}-{2**22 + 12345}-abcd1234"
    os.rename(writer.staging, dead)  # as if left by a process that is gone
    assert [e["status"] for e in list_entries(tmp_path)] == ["stale"]
    assert remove_stale(tmp_path) == 1 and list_entries(tmp_path) == []


def test_manifest_missing_means_unfinished(tmp_path):
    path, _, _ = write_entry(tmp_path)
    (path / "manifest.json").unlink()
    assert check_entry(path) == "no manifest (fill did not finish)"
    assert [e["status"] for e in list_entries(tmp_path)] == ["invalid"]


def test_commit_requires_every_example(tmp_path):
    writer = EntryWriter(tmp_path, KEY, 3, {})
    writer.add(torch.tensor([0, 2]), {"hidden": torch.ones(2, 4)}, torch.tensor([1, 1]), {})
    with pytest.raises(RunError, match=r"1 of 3 examples never arrived \(first ids: \[1\]\)"):
        writer.commit()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_duplicate_example_is_refused(tmp_path):
    writer = EntryWriter(tmp_path, KEY, 3, {})
    writer.add(torch.tensor([0]), {"hidden": torch.ones(1, 4)}, torch.tensor([1]), {})
    with pytest.raises(RunError, match="seen twice"):
        writer.add(torch.tensor([0]), {"hidden": torch.ones(1, 4)}, torch.tensor([1]), {})
    writer.abort()


def test_bf16_entry_is_half_the_bytes_and_converts_on_lookup(tmp_path):
    key = CacheKey(prefix="p" * 64, boundary=3, data="d" * 64, split="train", dtype="bf16")
    writer = EntryWriter(tmp_path, key, 2, {})
    rows = torch.randn(5, 8)
    writer.add(torch.tensor([0, 1]), {"hidden": rows.bfloat16()}, torch.tensor([2, 3]), {})
    path = writer.commit()
    assert (path / "hidden.bin").stat().st_size == 5 * 8 * 2
    store = ActivationStore.open(path, tier="disk", device="cpu", compute_dtype=torch.float32)
    assert store.lossy
    state = store.lookup(torch.tensor([1]))
    assert state["hidden"].dtype == torch.float32
    assert torch.equal(state["hidden"][0], rows[2:5].bfloat16().float())


def test_fp16_overflow_is_refused(tmp_path):
    from ftengine.runtime.cache.fill import run_fill

    class Scale(torch.nn.Module):  # stands in for a backbone whose activations grow past 65504
        groups = [object()]

        def forward_from(self, index, state, stop=None):
            return {"features": state["pixels"] * 1e5}

    key = CacheKey(prefix="p", boundary=1, data="d", split="train", dtype="fp16")
    writer = EntryWriter(tmp_path, key, 2, {})
    batch = {"pixels": torch.ones(2, 3), "index": torch.tensor([0, 1])}
    with pytest.raises(RunError, match=r"'features' exceeds the fp16 range \(max 65504, got 1e\+05\); set cache.dtype"):
        run_fill(Scale(), [batch], {1: writer}, device=torch.device("cpu"), store_dtype=torch.float16)
    writer.abort()
    with pytest.raises(RunError, match="the data collate gives no 'index'"):
        run_fill(Scale(), [{"pixels": torch.ones(2, 3)}], {1: writer}, device=torch.device("cpu"),
                 store_dtype=torch.float16)
