"""Helpers for the activation cache tests: a tiny CSV text data bundle and planning the MiniLM example spec."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ftengine.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
WORDS = ("good bad great awful fine movie film plot actor scene boring lovely terrible story slow fast music dull "
         "bright warm cold sharp funny sad long short loud quiet odd clever silly sweet").split()


def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A small labelled text CSV with lengths from 1 to ~30 words (ragged batches)."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(rows):
            n = rng.choice([1, 2, 3, 5, 8, 13, 21, 30])
            w.writerow([" ".join(rng.choice(WORDS) for _ in range(n)), rng.choice(["pos", "neg", "neu"])])
    return path


class _Rows(Dataset):
    def __init__(self, encoded: list[dict[str, Any]]) -> None:
        self.rows = encoded

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


class CsvTextBundle:
    """Stand-in with the DataBundle interface (train/validation/test, collate with "index", lengths,
    fingerprint over the file's bytes and the tokenizer settings); the real one lives in ftengine.data."""

    def __init__(self, path: Path, tokenizer: Any, max_length: int = 64, val_every: int = 5) -> None:
        self.path, self.tokenizer, self.max_length = path, tokenizer, max_length
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.labels = sorted({r["label"] for r in rows})
        train = [r for i, r in enumerate(rows) if i % val_every]
        val = [r for i, r in enumerate(rows) if not i % val_every]
        self.train, self.validation, self.test = self._encode(train), self._encode(val), None
        self.lengths = {"train": [len(r["input_ids"]) for r in self.train.rows],
                        "validation": [len(r["input_ids"]) for r in self.validation.rows]}
        self.deterministic = True

    def _encode(self, rows: list[dict[str, str]]) -> _Rows:
        enc = self.tokenizer([r["text"] for r in rows], truncation=True, max_length=self.max_length)
        return _Rows([dict(input_ids=ids, label=self.labels.index(r["label"]), index=i)
                      for i, (ids, r) in enumerate(zip(enc["input_ids"], rows, strict=True))])

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.zeros(len(examples), width, dtype=torch.long)
        mask = torch.zeros(len(examples), width, dtype=torch.long)
        for row, e in enumerate(examples):
            ids[row, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[row, :len(e["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                "labels": torch.tensor([e["label"] for e in examples]),
                "index": torch.tensor([e["index"] for e in examples])}

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.path.read_bytes())
        h.update(f"max_length={self.max_length}|tok={type(self.tokenizer).__name__}|{len(self.tokenizer)}".encode())
        return h.hexdigest()


def make_plan(backbone: Any, preset_overrides: list[str], cache_overrides: list[str] = ()) -> Any:
    """Plan the MiniLM gradual-unfreeze example spec with overrides (freeze preset, cache settings)."""
    from ftengine.planner import plan

    # an fp32 fill, so the cache's exactness is what these tests see on every CPU (auto is bf16 where native;
    # tests/runtime/test_fill_precision.py covers that); a test's own cache_overrides come after and win
    fill = ["cache.fill_precision=fp32"]
    spec = load_spec(REPO / "specs" / "text_gradual_unfreeze.yaml", [*preset_overrides, *fill, *cache_overrides])
    return spec, plan(spec, backbone, num_classes=3)


def with_cache(graph: Any, **settings: Any) -> Any:
    """`graph` with some of its activation cache settings (`graph.cache`, a CachePlan) replaced."""
    return dataclasses.replace(graph, cache=dataclasses.replace(graph.cache, **settings))
