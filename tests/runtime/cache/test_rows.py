"""The disk tier: rows read per batch from the entry's files (no mapping), and where ``auto`` puts entries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from test_layout import write_entry

from ftengine.errors import RunError
from ftengine.runtime.cache.rows import RowFile
from ftengine.runtime.cache.store import ActivationStore
from ftengine.runtime.cache.tiers import plan_tiers


def rows_file(path: Path, rows: torch.Tensor) -> RowFile:
    path.write_bytes(rows.contiguous().view(torch.uint8).numpy().tobytes())
    return RowFile(path, rows.dtype, rows.shape[0], rows.shape[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_read_gathers_row_ranges_back_to_back(tmp_path, dtype):
    rows = torch.randn(10, 7).to(dtype)
    f = rows_file(tmp_path / "hidden.bin", rows)
    got = f.read([6, 0, 9, 3], [3, 2, 1, 0])
    assert got.dtype == dtype and got.shape == (6, 7)
    assert torch.equal(got, torch.cat([rows[6:9], rows[0:2], rows[9:10]]))
    assert f.read([], []).shape == (0, 7) and f.nbytes == 10 * 7 * rows.element_size()


def test_a_file_of_the_wrong_size_is_refused_at_open(tmp_path):
    path = tmp_path / "hidden.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(RunError, match=r"hidden.bin: 100 bytes, expected 112 \(4 rows of 28 bytes\)"):
        RowFile(path, torch.float32, 4, 7)


def test_a_file_cut_after_open_is_a_short_read_that_names_the_fix(tmp_path):
    path, _, _ = write_entry(tmp_path)
    store = ActivationStore.open(path, tier="disk", device="cpu")
    with open(path / "hidden.bin", "r+b") as f:
        f.truncate(20)
    with pytest.raises(RunError, match=r"hidden.bin: short read at row \d+ .*ftengine cache clear \w{8}"):
        store.lookup(torch.tensor([0, 1, 2]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_disk_lookups_map_nothing_and_match_the_host_tier(tmp_path):
    """The rows are read into each batch, not mapped: a mapping would keep every page a lookup touched resident
    in the process (the boundary held twice, with the page cache)."""
    path, _, _ = write_entry(tmp_path, lengths=(3, 1, 4), width=6)
    disk = ActivationStore.open(path, tier="disk", device="cpu")
    host = ActivationStore.open(path, tier="host", device="cpu")
    for ids in ([2, 0], [1, 0, 2], [2]):
        a, b = disk.lookup(torch.tensor(ids)), host.lookup(torch.tensor(ids))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    maps = Path("/proc/self/maps").read_text()
    assert str(path) not in maps
    assert disk.nbytes == host.nbytes == sum(p.stat().st_size for p in path.glob("*.bin") if p.name != "index.bin")


def test_auto_reads_from_disk_on_a_cpu_run_and_keeps_memory_tiers_on_an_accelerator():
    sizes = {("train", 3): 50 << 20, ("validation", 3): 20 << 20}
    uses = {3: 2}
    cpu = plan_tiers(sizes, uses, "auto", 2048 << 20, torch.device("cpu"))
    assert {t for t, _ in cpu.values()} == {"disk"} and all(note == "" for _, note in cpu.values())
    host = plan_tiers(sizes, uses, "host", 60 << 20, torch.device("cpu"))
    assert host[("train", 3)] == ("host", "") and host[("validation", 3)][0] == "disk"  # over the budget
    assert "does not fit cache.budget_mb" in host[("validation", 3)][1]
    accelerator = plan_tiers(sizes, uses, "auto", 2048 << 20, torch.device("meta"))
    assert {t for t, _ in accelerator.values()} == {"device"}
