"""With the real ftengine.data bundle: a changed data file or tokenizer setting is a cache miss."""

from __future__ import annotations

import pytest
from cache_testing import REPO, write_csv

from ftengine.planner import plan
from ftengine.runtime.cache import ActivationCache
from ftengine.spec import load_spec

build_data = pytest.importorskip("ftengine.data").build_data


def prepare(backbone, csv_path, *overrides):
    spec = load_spec(REPO / "specs" / "text_gradual_unfreeze.yaml",
                     [f"data.train={csv_path}", "data.encoding=utf-8", "data.label_column=label", "data.labels=null",
                      "data.limit=null", "data.balance=none", "data.split.test=0.0", *overrides])
    data = build_data(spec.data, backbone, csv_path.parent, seed=0)
    graph = plan(spec, backbone, num_classes=len(data.labels))
    cache = ActivationCache.create(graph, backbone, data, device="cpu")
    cache.prepare([5], splits=("train",), quiet=True)
    return cache.stats()


def test_data_file_and_max_length_are_part_of_the_key(minilm_backbone, tmp_path, cache_dir):
    path = write_csv(tmp_path / "reviews.csv", rows=30)
    assert prepare(minilm_backbone, path)["forward_passes"] == {"train": {5: 1}}
    assert prepare(minilm_backbone, path)["forward_passes"] == {}  # same file, same settings: warm
    lines = path.read_text().splitlines()
    lines[3] = "completely different words here," + lines[3].rsplit(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")  # same rows and labels, one text edited
    assert prepare(minilm_backbone, path)["forward_passes"] == {"train": {5: 1}}
    assert prepare(minilm_backbone, path, "data.max_length=8")["forward_passes"] == {"train": {5: 1}}
    assert prepare(minilm_backbone, path, "data.max_length=8")["forward_passes"] == {}
