"""A toy backbone, head and data bundle with the real interfaces (Backbone groups, DataBundle), for fast loop tests.

The backbone is three small layer groups over 8 input features (stem with BatchNorm, two blocks with dropout);
the planner plans it like any other image backbone, so stages, LRs and cache points are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ftengine.backbones.backbone import Backbone, GroupDef
from ftengine.data import DataBundle
from ftengine.spec import Spec

IN, HIDDEN = 8, 16


def _run(name: str):
    def run(model: nn.Module, state: dict[str, torch.Tensor], ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = state["pixels"] if name == "stem" else state["features"]
        return {"features": getattr(model, name)(x)}
    return run


def toy_backbone() -> Backbone:
    """Groups: stem (Linear + BatchNorm), block1, block2 (Linear + GELU + Dropout); feature_dim 16."""
    model = nn.Module()
    model.stem = nn.Sequential(nn.Linear(IN, HIDDEN), nn.BatchNorm1d(HIDDEN))
    model.block1 = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.GELU(), nn.Dropout(0.1))
    model.block2 = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.GELU(), nn.Dropout(0.1))
    groups = [GroupDef(n, (n,), _run(n)) for n in ("stem", "block1", "block2")]
    return Backbone(model, groups, modality="image", family="cnn", feature_dim=HIDDEN,
                    boundary_shape_fn=lambda b, i, n: (IN,) if i == 0 else (HIDDEN,),
                    preprocessing={"image_size": 8, "mean": [0.0], "std": [1.0]})


class ToyHead(nn.Module):
    """Dropout + Linear over the features."""

    def __init__(self, classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout, self.fc = nn.Dropout(dropout), nn.Linear(HIDDEN, classes)

    def forward(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(state["features"]))


class _Split(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixels": self.x[i], "label": int(self.y[i]), "index": i}


def _collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"pixels": torch.stack([e["pixels"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples]),
            "index": torch.tensor([e["index"] for e in examples])}


def toy_data(n_train: int = 96, n_val: int = 48, n_test: int = 48, seed: int = 0) -> DataBundle:
    """A learnable 3-class problem (labels from a fixed random projection) in a real DataBundle."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(IN, 3, generator=g)
    splits = {}
    for name, n in (("train", n_train), ("validation", n_val), ("test", n_test)):
        x = torch.randn(n, IN, generator=g)
        splits[name] = _Split(x, (x @ w).argmax(1)) if n else None
    return DataBundle(kind="toy", modality="image", labels=["a", "b", "c"], collate=_collate,
                      class_weights=torch.tensor([1.0, 2.0, 0.5]), fingerprint_parts={"toy": seed}, **splits)


def toy_spec(**sections: Any) -> Spec:
    """A spec the planner accepts for the toy backbone (module kind; 3 labels; the data section is not read)."""
    base: dict[str, Any] = {
        "backbone": {"kind": "module", "factory": "toy:make"},
        "head": {"kind": "linear", "pooling": "avg"},
        "data": {"kind": "image_folder", "train": "unused", "image_size": 8, "labels": ["a", "b", "c"]},
        "freeze": {"stages": [{"name": "head", "trainable": ["head"], "epochs": 2},
                              {"name": "top", "trainable": ["head", "block2"], "epochs": 2, "lr_scale": 0.5}]},
        "optimizer": {"lr": 1e-2, "head_lr": 5e-2},
        "training": {"batch_size": 16, "seed": 0},
        "output": {"plots": False},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) and key != "freeze" else value
    return Spec.model_validate(base)


def toy_build(spec: Spec, spec_dir: Any, device: torch.device, *, pretrained: bool = True,
              data: DataBundle | None = None, startup: Any = None) -> Any:
    """Stand-in for `build` (`ftengine.runtime.assemble`, as `run_spec` calls it): seeded toy backbone, head and
    data, planned for real."""
    from ftengine.planner import plan
    from ftengine.runtime.model import FineTuneModel
    from ftengine.runtime.assemble import Built
    from ftengine.runtime.seeding import seed_everything

    seed_everything(spec.training.seed)
    backbone = toy_backbone()
    data = data or toy_data()
    graph = plan(spec, backbone, num_classes=len(data.labels))
    return Built(FineTuneModel(backbone, ToyHead(len(data.labels), spec.head.dropout)).to(device), data, graph, device)


REPO_SPECS = Path(__file__).resolve().parents[2] / "specs"
