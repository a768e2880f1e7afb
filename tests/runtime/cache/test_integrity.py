"""Cache entries carry per-chunk CRC-32s: damage is found, named, reported by `cache ls --verify`, and a run
refills a damaged entry (with a warning) and trains exactly as on a clean cache."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
from toy import toy_build, toy_data

from ftengine.cli import main
from ftengine.runtime.cache.integrity import ChunkSums, damaged_chunks
from ftengine.runtime.cache.keys import FORMAT_VERSION, CacheKey
from ftengine.runtime.cache.layout import EntryWriter, check_entry, list_entries

TIMING = ("epoch_seconds", "samples_per_second")


def test_chunk_sums_follow_stream_offsets_not_write_sizes():
    data = bytes(range(256)) * 3  # 768 bytes
    sums = ChunkSums(chunk_bytes=100)
    for start, stop in ((0, 7), (7, 250), (250, 251), (251, 768)):
        sums.update(data[start:stop])
    record = sums.finish()
    # Reference: zlib.crc32 of each 100-byte slice of the whole stream, the last one 68 bytes.
    assert record == {"chunk_bytes": 100, "crc32": [zlib.crc32(data[i:i + 100]) for i in range(0, 768, 100)]}
    assert ChunkSums(100).finish()["crc32"] == []


def test_damaged_chunks_are_located(tmp_path):
    data = bytes(1000)
    sums = ChunkSums(chunk_bytes=100)
    sums.update(data)
    record = sums.finish()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert damaged_chunks(path, record) == []
    path.write_bytes(data[:350] + b"\x01" + data[351:])
    assert damaged_chunks(path, record) == [3]
    path.write_bytes(data[:450])  # truncated: the cut chunk and every missing one
    assert damaged_chunks(path, record) == [4, 5, 6, 7, 8, 9]


def _entry(root, n: int = 64, width: int = 32 * 1024):
    """A fixed-field entry of n rows x width fp32 (8 MiB by default: two checksum chunks)."""
    key = CacheKey(prefix="p" * 64, boundary=2, data="d" * 64, split="train", dtype="fp32")
    writer = EntryWriter(root, key, n, {"split": "train", "boundary": 2, "boundary_name": "block1"})
    rows = torch.arange(n * width, dtype=torch.float32).view(n, width)
    for start in range(0, n, 24):  # batches that straddle the chunk boundary
        ids = torch.arange(start, min(start + 24, n))
        writer.add(ids, {}, None, {"features": rows[ids]})
    return writer.commit()


def test_flipped_bytes_are_named_by_file_and_chunk(tmp_path):
    path = _entry(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == FORMAT_VERSION == 2
    assert len(manifest["fields"]["features"]["crc32"]) == 2 and check_entry(path, full=True) is None
    with open(path / "features.bin", "r+b") as f:
        f.seek(5 << 20)
        f.write(b"\xa5" * 12)
    assert check_entry(path) is None  # the size check on every open cannot see it
    assert check_entry(path, full=True) == ("features.bin: chunk 1 of 2 (bytes 4.0 MiB..8.0 MiB) does not match its "
                                            "checksum (corrupted on disk)")


def test_old_format_entries_are_listed_as_invalid_never_read(tmp_path):
    path = _entry(tmp_path, n=2, width=4)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    assert check_entry(path, full=True) == f"format 1 (this ftengine reads {FORMAT_VERSION})"
    assert [e["status"] for e in list_entries(tmp_path)] == ["invalid"]


def test_ls_verify_reports_each_damaged_entry(tmp_path, capsys):
    root = tmp_path / "activations"
    path = _entry(root)
    with open(path / "features.bin", "r+b") as f:
        f.write(b"\xff" * 12)
    assert main(["cache", "ls", "--dir", str(tmp_path)]) == 0  # without --verify: sizes only
    capsys.readouterr()
    assert main(["cache", "ls", "--dir", str(tmp_path), "--verify"]) == 1
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("damaged:")]
    assert line == (f"damaged: {path.name[:12]} (train, boundary 2): features.bin: chunk 0 of 2 (bytes 0 B..4.0 MiB) "
                    "does not match its checksum (corrupted on disk); a run refills it on its next use, or remove it "
                    f"now: ftengine cache clear {path.name[:12]}")


# --- a run over a damaged entry: refilled, warned, and the same training as with a clean cache ---------------

def _cached_toy_run(toy_run, monkeypatch, n_train: int):
    import ftengine.runtime.run as run_module

    data = toy_data(n_train=n_train)
    monkeypatch.setattr(run_module, "build", lambda *a, **k: toy_build(*a, data=data, **k))

    def run(name: str):
        return toy_run(name, cache={"enabled": "auto", "dtype": "fp32"}, training={"batch_size": 256, "seed": 0},
                       freeze={"stages": [{"name": "head", "trainable": ["head"], "epochs": 2}]})

    return run


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _train_file(cache_root):
    (entry,) = [e for e in list_entries(cache_root) if e["manifest"]["summary"]["split"] == "train"]
    return entry["path"] / "features.bin"


# 1 MiB needs a train entry past 1 MiB: 16,500 examples x 16 fp32 features = 1,056,000 bytes.
@pytest.mark.parametrize(("damage", "n_train"), [("flip 12 bytes", 600),
                                                  pytest.param("1 MiB of 0xFF", 16_500, marks=pytest.mark.slow)])
def test_damaged_entry_is_refilled_with_a_warning_and_training_is_unchanged(toy_run, monkeypatch, tmp_path, capsys,
                                                                             damage, n_train):
    run = _cached_toy_run(toy_run, monkeypatch, n_train)
    clean = run("clean")
    capsys.readouterr()
    target = _train_file(tmp_path / "cache" / "activations")
    size = target.stat().st_size
    assert size == n_train * 16 * 4
    with open(target, "r+b") as f:
        if damage == "flip 12 bytes":
            f.seek(size // 2)
            original = f.read(12)
            f.seek(size // 2)
            f.write(bytes(b ^ 0xFF for b in original))
        else:
            f.seek(size - (1 << 20) - 100)
            f.write(b"\xff" * (1 << 20))
    assert target.stat().st_size == size  # same size: only the checksums can tell
    again = run("again")
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "activation cache entry" in line]
    assert warning.startswith(f"ftengine: warning: activation cache entry {target.parent.name[:12]} (train, boundary 3): "
                              "features.bin: ")
    assert "does not match its checksum (corrupted on disk); removed, filling it again" in warning
    assert check_entry(target.parent, full=True) is None  # refilled
    assert _rows(again.run_dir) == _rows(clean.run_dir)  # losses and metrics identical to the clean run
