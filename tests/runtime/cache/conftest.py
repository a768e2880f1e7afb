"""Fixtures for the activation cache: the real MiniLM backbone, a tiny CSV-backed text bundle, a cache dir."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cache_testing import CsvTextBundle, write_csv


@pytest.fixture(scope="session")
def minilm_backbone(minilm_dir: Path):
    """The ftengine Backbone over the bundled MiniLM (shared: tests that train use `fresh_backbone`)."""
    from ftengine.backbones.hf import load_hf_backbone

    return load_hf_backbone(str(minilm_dir)).eval()


@pytest.fixture()
def fresh_backbone(minilm_backbone):
    """A private copy for tests that change weights."""
    return copy.deepcopy(minilm_backbone)


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "tiny.csv", rows=40)


@pytest.fixture()
def tiny_data(tiny_csv: Path, minilm_backbone) -> CsvTextBundle:
    return CsvTextBundle(tiny_csv, minilm_backbone.tokenizer)


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    """An empty cache directory, also set as $FTENGINE_CACHE_DIR so nothing touches ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(path))
    return path
