"""``kind: torchvision`` -- torchvision ResNets (stem, layer1..layer4); the ``fc`` classifier is removed.

Weights: a torchvision weight name (``DEFAULT``, ``IMAGENET1K_V2``; validated against the arch's weights
enum, fetched through torch.hub's cache, so offline they load only if already cached), a local
state-dict file (``fc.*`` keys are ignored), or None for random initialisation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftengine.backbones.backbone import Backbone, GroupDef, State, image_boundary_shape
from ftengine.backbones.loading import drop_module, existing_path, load_into, load_state_dict_file
from ftengine.errors import RunError, SpecError

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHT_NAME = re.compile(r"^([A-Za-z0-9]+_Weights\.)?[A-Z0-9_]+$")


def build_torchvision(spec: Any, *, pretrained: bool, device: str | torch.device,
                      base_dir: str | Path | None) -> Backbone:
    """Builder for ``TorchvisionBackboneSpec``."""
    return load_resnet(spec.arch, weights=spec.weights, pretrained=pretrained, device=device, base_dir=base_dir)


def named_weights(arch: str, weights: str) -> Any | None:
    """The torchvision weights enum member ``weights`` names for ``arch``; None if it is not a name.

    Raises:
        SpecError: it looks like a weight name but ``arch`` has no such weights.
    """
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    member = weights.split(".", 1)[1] if weights.startswith(f"{enum.__name__}.") else weights
    if member in enum.__members__:
        return enum[member]
    if _WEIGHT_NAME.match(weights):
        raise SpecError(f"backbone.weights: {arch} has no torchvision weights '{weights}' "
                        f"(choose from {', '.join(enum.__members__)}); or give a state-dict file, or null")
    return None


def preprocessing_for(weights: Any | None) -> dict[str, Any]:
    """``image_size``, ``mean``, ``std`` from the weights' eval transforms; ImageNet defaults otherwise."""
    if weights is None:
        return {"image_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    transform = weights.transforms()
    return {"image_size": int(transform.crop_size[0]), "mean": list(transform.mean), "std": list(transform.std)}


def _download(weights: Any) -> dict[str, torch.Tensor]:
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, HTTPError, OSError, hash errors: all "could not fetch"
        from torch.hub import get_dir

        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise RunError(f"backbone.weights: cannot fetch torchvision weights '{weights}' from {weights.url} "
                       f"({reason}); run once online (cached under {get_dir()}/checkpoints), "
                       "or set backbone.weights to a local state-dict file, or null for random init") from exc


def _stem(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.maxpool(model.relu(model.bn1(model.conv1(state["pixels"]))))}


def _stage(name: str, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": getattr(model, name)(state["features"])}


def resnet_groups() -> list[GroupDef]:
    """``stem`` (conv1, bn1, relu, maxpool) and ``layer1`` .. ``layer4``."""
    from functools import partial

    return [GroupDef("stem", ("conv1", "bn1", "relu", "maxpool"), _stem)] + [
        GroupDef(f"layer{i}", (f"layer{i}",), partial(_stage, f"layer{i}")) for i in range(1, 5)]


def load_resnet(arch: str, *, weights: str | None = None, pretrained: bool = True,
                device: str | torch.device = "cpu", base_dir: str | Path | None = None) -> Backbone:
    """Build a torchvision ResNet backbone (final state: ``features`` (B, C, H/32, W/32)).

    Args:
        arch: one of :data:`RESNET_ARCHS`.
        weights: torchvision weight name, state-dict file (path or ``pkg:``), or None (random init).
        pretrained: load ``weights``; False (or ``device="meta"``) builds without reading any weights.
        device: where the parameters live.
        base_dir: folder relative weight paths start from.
    """
    from torchvision.models import get_model

    if arch not in RESNET_ARCHS:
        raise SpecError(f"backbone.arch: unsupported torchvision architecture '{arch}' "
                        f"(supported: {', '.join(RESNET_ARCHS)}); pick one or use the module kind")
    enum_weights = named_weights(arch, weights) if weights else None
    path = existing_path(weights, base_dir, "backbone.weights") if weights and enum_weights is None else None
    meta = torch.device(device).type == "meta"
    with torch.device("meta") if meta else torch.device("cpu"):
        model = get_model(arch, weights=None)
    feature_dim = model.fc.in_features
    drop_module(model, "fc")
    report: dict[str, Any] = {}
    loaded = bool(pretrained and not meta and weights)
    if loaded:
        state = _download(enum_weights) if enum_weights is not None else load_state_dict_file(path, "backbone.weights")
        report = load_into(model, state, where="backbone.weights", strict=True, dropped=("fc",),
                           strict_fix=f"use a state dict saved from torchvision's {arch}")
    if not meta:
        model = model.to(device)
    return Backbone(
        model, resnet_groups(), modality="image", family="cnn", feature_dim=feature_dim,
        boundary_shape_fn=image_boundary_shape, preprocessing=preprocessing_for(enum_weights),
        info={"kind": "torchvision", "arch": arch, "weights": weights, "pretrained": loaded,
              "load_report": report},
    )
