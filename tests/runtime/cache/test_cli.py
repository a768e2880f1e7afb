"""`ftengine cache ls / clear` on a cache directory with real entries."""

from __future__ import annotations

import json

import torch

from ftengine.cli import main
from ftengine.runtime.cache.keys import CacheKey
from ftengine.runtime.cache.layout import EntryWriter


def make_entry(root, split: str, boundary: int):
    key = CacheKey(prefix="p" * 64, boundary=boundary, data="d" * 64, split=split, dtype="bf16")
    writer = EntryWriter(root, key, 2, dict(spec="text_probe", model="pkg:minilm/model", split=split,
                                            boundary=boundary, boundary_name="encoder.layer.3", dtype="bf16"))
    writer.add(torch.tensor([1, 0]), {"hidden": torch.ones(5, 4, dtype=torch.bfloat16)}, torch.tensor([2, 3]), {})
    return writer.commit()


def test_ls_shows_entries_and_damage(tmp_path, capsys):
    root = tmp_path / "activations"
    good = make_entry(root, "train", 5)
    bad = make_entry(root, "validation", 5)
    (bad / "hidden.bin").write_bytes(b"short")
    assert main(["cache", "ls", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"cache directory: {root}" in out
    line = next(x for x in out.splitlines() if x.startswith(good.name[:12]))
    for part in ("ok", "train", "5 (after encoder.layer.3)", "bf16", "2", "pkg:minilm/model / text_probe"):
        assert part in line
    assert "invalid" in out and "hidden.bin: 5 bytes, manifest says 40" in out
    assert main(["cache", "ls", "--dir", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["entries"]
    assert {(e["split"], e["status"]) for e in listed} == {("train", "ok"), ("validation", "invalid")}


def test_clear_by_id_stale_and_all(tmp_path, capsys):
    root = tmp_path / "activations"
    first, second = make_entry(root, "train", 5), make_entry(root, "test", 3)
    (second / "manifest.json").unlink()
    assert main(["cache", "clear", "--dir", str(tmp_path)]) == 2
    assert "nothing selected" in capsys.readouterr().err
    assert main(["cache", "clear", "--dir", str(tmp_path), "zzzz"]) == 2
    assert "no entry matches 'zzzz'" in capsys.readouterr().err
    assert main(["cache", "clear", "--dir", str(tmp_path), "--stale"]) == 0
    assert not second.exists() and first.exists()
    make_entry(root, "test", 3)
    assert main(["cache", "clear", "--dir", str(tmp_path), first.name[:10]]) == 0
    assert not first.exists() and "removed 1 entries" in capsys.readouterr().out
    assert main(["cache", "clear", "--dir", str(tmp_path), "--all"]) == 0
    assert list(root.iterdir()) == []
