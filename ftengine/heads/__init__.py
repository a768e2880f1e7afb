"""Heads: a new classifier on top of a backbone's final state.

``build_head(spec.head, backbone, num_classes)`` resolves ``pooling: auto`` from the backbone family,
checks the pooling fits the modality, and builds the head through a registry keyed by the head ``kind``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ftengine.errors import DataError, PlanError
from ftengine.heads.classifier import ClassificationHead, init_linear
from ftengine.heads.pooling import AUTO_POOLING, IMAGE_POOLINGS, TEXT_POOLINGS
from ftengine.spec.head import HeadSpec

__all__ = ["AUTO_POOLING", "HEAD_KINDS", "ClassificationHead", "build_head", "init_linear", "resolve_pooling"]


def _classifier(in_features: int, num_classes: int, **kwargs: Any) -> nn.Module:
    return ClassificationHead(in_features, num_classes, **kwargs)


HEAD_KINDS: dict[str, Callable[..., nn.Module]] = {"linear": _classifier, "mlp": _classifier}
"""``kind -> builder(in_features, num_classes, *, hidden, dropout, activation, pooling)``."""


def resolve_pooling(pooling: str, backbone: Any) -> str:
    """The concrete pooling for ``backbone`` (``auto`` -> by family), checked against its modality.

    Raises:
        PlanError: a text pooling on an image backbone or the reverse.
    """
    family, modality = getattr(backbone, "family", "encoder"), getattr(backbone, "modality", "text")
    if pooling == "auto":
        return AUTO_POOLING[family]
    fits = TEXT_POOLINGS if modality == "text" else IMAGE_POOLINGS
    if pooling not in fits:
        raise PlanError(f"head.pooling: '{pooling}' does not apply to a {modality} backbone (got '{pooling}'); "
                        f"use auto ({AUTO_POOLING[family]}) or one of {', '.join(fits)}")
    return pooling


def build_head(spec: HeadSpec, backbone: Any, num_classes: int | None) -> nn.Module:
    """Build the classification head for ``backbone``.

    Args:
        spec: the spec's head section.
        backbone: gives ``feature_dim``, ``family`` and ``modality``.
        num_classes: classes found in the data (None: take ``spec.num_classes``).

    Returns:
        A module mapping the backbone's final state to logits (B, num_classes).

    Raises:
        DataError: ``head.num_classes`` disagrees with the labels found.
        PlanError: the class count is unknown, or the pooling does not fit the backbone.
    """
    if num_classes is not None and spec.num_classes is not None and spec.num_classes != num_classes:
        raise DataError(f"head.num_classes: the training data has {num_classes} labels (got {spec.num_classes}); "
                        f"set head.num_classes: {num_classes} or leave it null to take it from the data")
    classes = num_classes if num_classes is not None else spec.num_classes
    if classes is None:
        raise PlanError("head.num_classes: unknown number of classes (got null and no data labels); "
                        "set head.num_classes or build the data first")
    pooling = resolve_pooling(spec.pooling, backbone)
    builder = HEAD_KINDS[spec.kind]
    return builder(int(backbone.feature_dim), classes, hidden=spec.hidden, dropout=spec.dropout,
                   activation=spec.activation, pooling=pooling)
