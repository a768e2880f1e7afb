"""transformers image models: ViT, DINOv2 (``vit`` family) and ConvNeXt (``cnn`` family).

States between groups are ``{"features": ...}``: patch tokens (B, N, D) for the transformers, feature maps
(B, C, H, W) for ConvNeXt. The last group applies the model's final norm and yields one vector per image,
(B, D), as the model's own image classifier reads it: the [CLS] token after ``layernorm`` for ViT and
DINOv2 (``ViTForImageClassification``), ``layernorm(mean over H, W)`` for ConvNeXt (its ``pooler_output``).
ViT's optional ``pooler`` (dense + tanh) is not part of the backbone, as in ``ViTForImageClassification``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ftengine.backbones.backbone import GroupDef, State
from ftengine.backbones.hf_families import HFFamily, numbered_groups, register_hf_family, unwrap
from ftengine.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD


def _embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.embeddings(state["pixels"])}


def _vit_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    if "mask" not in ctx:
        from transformers.masking_utils import create_bidirectional_mask

        # As ViTModel.forward: no attention mask for images, so this is None unless a config asks otherwise.
        ctx["mask"] = create_bidirectional_mask(config=model.config, inputs_embeds=state["features"],
                                                attention_mask=None)
    return {"features": unwrap(model.layers[index](state["features"], ctx["mask"]))}


def _dinov2_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": unwrap(model.encoder.layer[index](state["features"]))}


def _cls_after_norm(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.layernorm(state["features"])[:, 0]}


def _convnext_stage(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": unwrap(model.encoder.stages[index](state["features"]))}


def _convnext_pool_norm(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.layernorm(state["features"].mean([-2, -1]))}


def vit_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings``, ``layers.0`` .. ``layers.N-1``, ``layernorm`` (final norm, [CLS] token)."""
    return [GroupDef("embeddings", ("embeddings",), _embed), *numbered_groups("layers.", len(model.layers), _vit_layer),
            GroupDef("layernorm", ("layernorm",), _cls_after_norm)]


def dinov2_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings``, ``encoder.layer.0`` .. ``encoder.layer.N-1``, ``layernorm`` (final norm, [CLS] token)."""
    return [GroupDef("embeddings", ("embeddings",), _embed),
            *numbered_groups("encoder.layer.", len(model.encoder.layer), _dinov2_layer),
            GroupDef("layernorm", ("layernorm",), _cls_after_norm)]


def convnext_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings`` (patchify stem), ``encoder.stages.0`` .. ``encoder.stages.3``, ``layernorm`` (pool + norm)."""
    return [GroupDef("embeddings", ("embeddings",), _embed),
            *numbered_groups("encoder.stages.", len(model.encoder.stages), _convnext_stage),
            GroupDef("layernorm", ("layernorm",), _convnext_pool_norm)]


def image_preprocessing(config: Any, location: str | None) -> dict[str, Any]:
    """``image_size``, ``mean``, ``std`` from the checkpoint's ``preprocessor_config.json`` when it has one,
    else the config's ``image_size`` (224 if none) and ImageNet statistics."""
    size = getattr(config, "image_size", None) or 224
    size = size[0] if isinstance(size, (list, tuple)) else size
    found: dict[str, Any] = {}
    path = Path(location) / "preprocessor_config.json" if location else None
    if path is not None and path.is_file():
        found = json.loads(path.read_text())
    crop = found.get("crop_size") if found.get("do_center_crop") else None
    crop = crop or found.get("size")
    if isinstance(crop, dict):  # {"height": h, "width": w} or {"shortest_edge": s}
        crop = crop.get("height") or crop.get("shortest_edge")
    return {"image_size": int(crop or size), "mean": list(found.get("image_mean", IMAGENET_MEAN)),
            "std": list(found.get("image_std", IMAGENET_STD))}


register_hf_family(("vit",), HFFamily("vit", vit_groups, modality="image"))
register_hf_family(("dinov2",), HFFamily("vit", dinov2_groups, modality="image"))
register_hf_family(("convnext",), HFFamily("cnn", convnext_groups, modality="image"))
