"""Image preprocessing with torchvision.transforms.v2: resize, optional augmentation, normalise.

Evaluation: resize the shorter side to ``image_size`` and centre-crop a square (keeps the aspect ratio;
a no-op crop for square images). Training adds the spec's augmentation; random resized crops replace
the resize + crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.transforms import v2

from ftengine.errors import DataError
from ftengine.spec.data import AugmentSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing(backbone: Any, image_size: int | None, where: str = "data.image_size") -> dict[str, Any]:
    """``dict(image_size, mean, std)``: the spec's size, else the backbone's; the backbone's normalisation.

    Raises:
        DataError: neither the spec nor the backbone gives an image size.
    """
    pre = dict(getattr(backbone, "preprocessing", None) or {})
    size = image_size or pre.get("image_size")
    if not size:
        raise DataError(f"{where}: no image size (got null, and the backbone does not name one); set {where}, e.g. 224")
    note = None if pre.get("mean") is not None else "backbone gives no mean/std; normalising with ImageNet statistics"
    return {"image_size": int(size), "mean": [float(m) for m in pre.get("mean") or IMAGENET_MEAN],
            "std": [float(s) for s in pre.get("std") or IMAGENET_STD], "note": note}


def build_transform(image_size: int, mean: Sequence[float], std: Sequence[float], augment: AugmentSpec | None = None,
                    *, train: bool = False) -> v2.Compose:
    """The transform from a PIL image or a (C, H, W) tensor image to normalised float pixels (3, S, S).

    Args:
        image_size: output side in pixels.
        mean: per-channel mean (after scaling to [0, 1]).
        std: per-channel standard deviation.
        augment: the spec's augmentation (used only when ``train``).
        train: include the random augmentation.
    """
    aug = augment if train and augment is not None else AugmentSpec()
    from torchvision.transforms import v2  # imported here: text runs never pay for torchvision (~2-10 s)

    steps: list[Any] = [v2.ToImage()]
    if aug.random_resized_crop:
        steps.append(v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True))
    else:
        steps += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.rotation > 0:
        steps.append(v2.RandomRotation(aug.rotation))
    if aug.color_jitter > 0:
        c = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def transform_identity(pre: dict[str, Any], augment: AugmentSpec | None) -> dict[str, Any]:
    """The settings that decide the pixels (for the fingerprint)."""
    return {"image_size": pre["image_size"], "mean": pre["mean"], "std": pre["std"],
            "resize": "shorter_side+center_crop", "interpolation": "bilinear+antialias",
            "augment": augment.model_dump() if augment is not None else None}
