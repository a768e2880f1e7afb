"""Image backbones: fixed-shape feature maps are cached per example; BatchNorm statistics are part of the key."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import Dataset

from ftengine.backbones.backbone import Backbone, GroupDef, image_boundary_shape
from ftengine.planner.graph import CachePlan
from ftengine.runtime.cache import ActivationCache


def _run(name):
    def run(model, state, ctx):
        x = state["pixels"] if "pixels" in state else state["features"]
        return {"features": model.get_submodule(name)(x)}
    return run


def tiny_cnn() -> Backbone:
    torch.manual_seed(0)
    model = nn.Module()
    model.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    model.top = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    with torch.no_grad():  # non-trivial running statistics, as a pretrained network has
        for bn in (model.stem[1], model.block[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    groups = [GroupDef(n, (n,), _run(n)) for n in ("stem", "block", "top")]
    return Backbone(model, groups, modality="image", family="cnn", feature_dim=16,
                    boundary_shape_fn=image_boundary_shape, preprocessing={"image_size": 16, "mean": [0.5] * 3,
                                                                            "std": [0.5] * 3})


class Pixels(Dataset):
    def __init__(self, n: int) -> None:
        self.x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixels": self.x[i], "label": i % 2, "index": i}


class ImageBundle:
    def __init__(self, n: int = 20) -> None:
        self.train, self.validation, self.test, self.labels = Pixels(n), None, None, ["a", "b"]

    @staticmethod
    def collate(rows):
        return {"pixels": torch.stack([r["pixels"] for r in rows]), "labels": torch.tensor([r["label"] for r in rows]),
                "index": torch.tensor([r["index"] for r in rows])}

    def fingerprint(self) -> str:
        return hashlib.sha256(self.train.x.numpy().tobytes()).hexdigest()


def graph_reading(boundary: int, groups: int) -> SimpleNamespace:
    """The parts of an ExecutionGraph the cache reads: one stage that caches at ``boundary``, and the settings."""
    plans = tuple(SimpleNamespace(name=f"g{i}", trainable=i >= boundary) for i in range(groups + 1))
    stage = SimpleNamespace(index=0, name="s0", epochs=3, groups=plans,
                            cache=SimpleNamespace(boundary=boundary, allowed=True))
    settings = CachePlan(enabled="auto", dtype="fp32", tier="auto", budget_mb=64, dir=None, persist=True,
                         fill_precision="fp32")  # exact round trips on every CPU (auto is bf16 where native)
    return SimpleNamespace(stages=(stage,), cache=settings)


def test_feature_maps_round_trip_and_bn_statistics_are_keyed(cache_dir):
    backbone, data = tiny_cnn(), ImageBundle()
    backbone.train()  # the fill must still use running statistics (eval), and restore train mode after
    cache = ActivationCache.create(graph_reading(2, 3), backbone, data, device="cpu")
    cache.prepare([2], quiet=True)
    assert backbone.training and all(m.training for m in backbone.modules())
    idx = torch.tensor([7, 0, 19])
    got = cache.lookup("train", 2, idx)
    assert set(got) == {"features"} and got["features"].shape == (3, *backbone.boundary_shape(2))
    backbone.eval()
    with torch.no_grad():
        want = backbone.forward_from(0, {"pixels": data.train.x[idx]}, stop=2)["features"]
    torch.testing.assert_close(got["features"], want, rtol=1e-5, atol=1e-6)
    entry = cache.stats()["entries"][0]
    assert entry["bytes"] == 20 * 16 * 4 * 4 * 4  # N x C x H x W x fp32, nothing else
    backbone.get_submodule("block.1").running_var.mul_(1.5)  # new statistics: a different frozen prefix
    again = ActivationCache.create(graph_reading(2, 3), backbone, data, device="cpu")
    again.prepare([2], quiet=True)
    assert again.stats()["forward_passes"] == {"train": {2: 1}}
