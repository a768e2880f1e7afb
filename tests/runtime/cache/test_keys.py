"""Cache keys: the frozen-prefix fingerprint sees exactly the weights below the boundary."""

from __future__ import annotations

from pathlib import Path

import torch

from ftengine.runtime.cache.keys import FORMAT_VERSION, CacheKey, cache_root, prefix_fingerprints


def test_prefix_changes_only_with_weights_below_the_boundary(fresh_backbone):
    before = prefix_fingerprints(fresh_backbone, [1, 3, 5])
    with torch.no_grad():  # encoder.layer.2 is group 3: inside the prefixes of boundaries 5 only
        fresh_backbone.get_parameter("encoder.layer.2.output.dense.weight")[0, 0] += 1e-3
    after = prefix_fingerprints(fresh_backbone, [1, 3, 5])
    assert after[1] == before[1] and after[3] == before[3] and after[5] != before[5]


def test_prefix_sees_writes_through_dot_data(fresh_backbone):
    # `.data` writes do not bump version counters: the fingerprint must not rely on them.
    before = prefix_fingerprints(fresh_backbone, [1])[1]
    fresh_backbone.get_parameter("embeddings.LayerNorm.bias").data[0] += 1.0
    assert prefix_fingerprints(fresh_backbone, [1])[1] != before


def test_prefix_sees_buffers(fresh_backbone):
    # Buffers change outputs too (position ids here; BatchNorm statistics in CNNs: see test_image.py).
    before = prefix_fingerprints(fresh_backbone, [1])[1]
    fresh_backbone.get_buffer("embeddings.position_ids")[0, 0] += 1
    assert prefix_fingerprints(fresh_backbone, [1])[1] != before


def test_key_digest_covers_every_part():
    base = CacheKey(prefix="a", boundary=3, data="d", split="train", dtype="fp32")
    variants = [CacheKey(prefix="b", boundary=3, data="d", split="train", dtype="fp32"),
                CacheKey(prefix="a", boundary=4, data="d", split="train", dtype="fp32"),
                CacheKey(prefix="a", boundary=3, data="e", split="train", dtype="fp32"),
                CacheKey(prefix="a", boundary=3, data="d", split="validation", dtype="fp32"),
                CacheKey(prefix="a", boundary=3, data="d", split="train", dtype="bf16"),
                CacheKey(prefix="a", boundary=3, data="d", split="train", dtype="fp32", format=FORMAT_VERSION + 1)]
    assert len({base.entry_id, *(v.entry_id for v in variants)}) == 1 + len(variants)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root(str(tmp_path / "spec")) == (tmp_path / "spec" / "activations").resolve()
    assert cache_root(None) == (tmp_path / "env" / "activations").resolve()
    monkeypatch.delenv("FTENGINE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(None) == (tmp_path / "xdg" / "ftengine" / "activations").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root(None) == (Path.home() / ".cache" / "ftengine" / "activations").resolve()
