"""Stand-in backbone structures and spec builders for planner unit tests (the planner reads names and numbers only).

Real backbone structures (MiniLM, EfficientNet-Lite0, ResNet-18 on the meta device) are exercised in
test_specs.py; these fakes keep the arithmetic in the other tests easy to check by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftengine.spec import Spec, validate_spec


@dataclass(frozen=True)
class FakeGroup:
    name: str
    param_names: tuple[str, ...]
    num_params: int
    has_batchnorm: bool = False
    has_dropout: bool = False


class FakeBackbone:
    """Just what the planner reads: groups, modality, family, feature_dim, preprocessing, boundary_shape."""

    def __init__(self, groups: list[FakeGroup], *, modality: str, family: str, feature_dim: int,
                 shapes: list[tuple[int, ...]] | None = None, image_size: int | None = None) -> None:
        self.groups = groups
        self.modality, self.family, self.feature_dim = modality, family, feature_dim
        self.preprocessing = {"image_size": image_size} if image_size else None
        self._shapes = shapes

    def boundary_shape(self, index: int, example_len: int | None = None) -> tuple[int, ...]:
        if self.modality == "text":
            return (example_len,) if index == 0 else (example_len, self.feature_dim)
        assert self._shapes is not None
        return self._shapes[index]


def fake_bert(layers: int = 6, hidden: int = 8) -> FakeBackbone:
    """BERT layout: embeddings (1000 params), encoder.layer.i (100 each), pooler (10); dropout everywhere."""
    groups = [FakeGroup("embeddings", ("embeddings.word_embeddings.weight",), 1000, has_dropout=True)]
    groups += [FakeGroup(f"encoder.layer.{i}", (f"encoder.layer.{i}.attention.self.query.weight",), 100, has_dropout=True)
               for i in range(layers)]
    groups.append(FakeGroup("pooler", ("pooler.dense.weight", "pooler.dense.bias"), 10))
    return FakeBackbone(groups, modality="text", family="encoder", feature_dim=hidden)


def fake_resnet() -> FakeBackbone:
    """ResNet layout: stem, layer1..layer4, all with BatchNorm, no dropout; 64 px input."""
    names = ["stem", "layer1", "layer2", "layer3", "layer4"]
    groups = [FakeGroup(n, (f"{n}.0.weight",), 10 * (i + 1), has_batchnorm=True) for i, n in enumerate(names)]
    shapes = [(3, 64, 64), (64, 16, 16), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    return FakeBackbone(groups, modality="image", family="cnn", feature_dim=512, shapes=shapes, image_size=64)


def make_spec(**sections: Any) -> Spec:
    """A valid spec: MiniLM-style hf backbone on 3-label text data, overridden by `sections`."""
    data: dict[str, Any] = {
        "backbone": {"kind": "hf", "source": "some/model"},
        "data": {"kind": "text", "train": "train.csv", "labels": ["neg", "neu", "pos"]},
    }
    data.update(sections)
    return validate_spec(data)


def image_spec(**sections: Any) -> Spec:
    """A valid spec: torchvision resnet18 on an image folder, overridden by `sections`."""
    return make_spec(**{"backbone": {"kind": "torchvision", "arch": "resnet18"},
                        "data": {"kind": "image_folder", "train": "imgs"}, **sections})
