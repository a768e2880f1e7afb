"""What the cache bench trains: the bundled MiniLM on a seeded subset of the bundled tweet-sentiment CSV, and the
freeze section of each scenario. Plain data (torch-free): the CLI's options list the scenario names."""

from __future__ import annotations

from typing import Any

from ftengine.bench.e2e_recipes import DATA, LABELS, MODEL

SCENARIOS: dict[str, dict[str, Any]] = {
    "feature_extraction": {"preset": "feature_extraction"},
    "bottom4_frozen": {"stages": [{"name": "top2", "trainable": ["encoder.layer.4-5", "head"], "epochs": 1}]},
    "gradual_3stage": {"preset": "gradual_unfreeze", "groups_per_stage": 2, "max_unfrozen": 4, "head_epochs": 1},
}
"""Scenario name -> the spec's `freeze` section."""


def bench_spec_dict(examples: int, max_length: int, batch_size: int, freeze: dict[str, Any],
                    cache: dict[str, Any], source: str = MODEL) -> dict[str, Any]:
    """A spec (as a dict) for the model at ``source`` (default: the bundled MiniLM) on ``examples`` tweets with the
    given freeze and cache sections."""
    return {
        "backbone": {"kind": "hf", "source": source},
        "head": {"kind": "linear", "pooling": "mean", "dropout": 0.1},
        "data": {"kind": "text", "train": DATA, "encoding": "latin-1", "text_column": "text",
                 "label_column": "sentiment", "labels": LABELS, "limit": examples, "max_length": max_length,
                 "split": {"validation": 0.1, "test": 0.0, "seed": 0}},
        "freeze": freeze,
        "optimizer": {"kind": "adamw", "lr": 5e-5, "head_lr": 1e-3},
        "training": {"batch_size": batch_size, "epochs": 1},
        "cache": cache,
    }
