"""Facts the planner derives from the spec and the backbone structure: pooling, unused groups, head size."""

from __future__ import annotations

from typing import Any

from ftengine.spec import Spec
from ftengine.spec.data import DIGIT_TAGS

DIGITS_CLASSES = 10  # scikit-learn's digits: 0-9


def auto_pooling(family: str) -> str:
    """What `head.pooling: auto` means for a backbone family (the heads package decides: encoder mean, ...)."""
    from ftengine.heads.pooling import AUTO_POOLING

    return AUTO_POOLING[family]


def pooling(spec: Spec, backbone: Any) -> str:
    """The head's pooling after resolving `auto` for the backbone's family."""
    return spec.head.pooling if spec.head.pooling != "auto" else auto_pooling(backbone.family)


def unused_groups(spec: Spec, backbone: Any) -> dict[str, str]:
    """Backbone groups whose output the head never reads: {name: why}.

    A BERT-style `pooler` group (dense + tanh over the first token) feeds only `pooling: pooler`; with any
    other pooling it gets no gradient, so training it would only let weight decay shrink it, and putting it
    at depth 0 of layer-wise decay or in a gradual-unfreeze stage of its own would waste that slot.
    """
    used_pooling = pooling(spec, backbone)
    out = {}
    for group in backbone.groups:
        if group.name == "pooler" and backbone.family == "encoder" and used_pooling != "pooler":
            out[group.name] = f"the head pools with '{used_pooling}' and never reads it"
    return out


def backbone_source(spec: Spec) -> str:
    """The field that names the backbone's model, as written: hf `source`, torchvision `arch`, timm `name`, module
    `factory`."""
    backbone = spec.backbone
    return str(next(getattr(backbone, f) for f in ("source", "arch", "name", "factory") if hasattr(backbone, f)))


def labels_count(spec: Spec) -> int | None:
    """Classes the data section states without reading any file (explicit labels, digits), else None."""
    if spec.data.kind == "sklearn_digits":
        return DIGITS_CLASSES if spec.data.task == "classification" else len(DIGIT_TAGS)
    labels = getattr(spec.data, "label_columns", None) or getattr(spec.data, "labels", None)
    return len(labels) if labels else None


def num_classes(spec: Spec, given: int | None) -> int | None:
    """Classes of the head: given (from loaded data) > head.num_classes > data labels > None (unknown yet)."""
    return given or spec.head.num_classes or labels_count(spec)


def head_params(spec: Spec, feature_dim: int, classes: int | None) -> int | None:
    """Scalar parameters of the head: a Linear (weight + bias) per layer over [feature_dim, *hidden, classes]."""
    if classes is None:
        return None
    dims = [feature_dim, *spec.head.hidden, classes]
    return sum((a + 1) * b for a, b in zip(dims, dims[1:]))
