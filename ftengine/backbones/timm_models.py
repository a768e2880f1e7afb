"""``kind: timm`` -- a timm image model split into the groups of timm's own ``group_matcher``.

Groups: ``stem``, then each stage or block the coarse matcher numbers (``layer1``.., ``stages.0``..,
``blocks.0``..), then a group for what the model applies after its last block before the classifier:
``head.norm`` for ConvNeXt (``norm_pre`` + pooling + the head's LayerNorm), ``norm`` for ViT (``norm`` +
token pooling + ``fc_norm``). (``head`` itself is the selector of the new classification head.)
The classifier itself is removed (``reset_classifier(0)``); the ResNet head is pooling only, so a
ResNet ends at its last stage's feature maps. Every layout is checked against the matcher: each group's
parameters lie in one matcher group, in the matcher's order.

Weights: a pretrained tag of the model (``a1_in1k`` for ``resnet50.a1_in1k``, or ``default``; fetched
from the Hugging Face hub through timm, so offline only if cached), a state-dict file (classifier keys are
ignored), or None for random initialisation.
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftengine.backbones.backbone import Backbone, GroupDef, State, image_boundary_shape
from ftengine.backbones.loading import existing_path, load_into, load_state_dict_file
from ftengine.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD
from ftengine.errors import RunError, SpecError
from ftengine.spec.paths import is_package_path

_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def build_timm(spec: Any, *, pretrained: bool, device: str | torch.device, base_dir: str | Path | None) -> Backbone:
    """Builder for ``TimmBackboneSpec``."""
    return load_timm_backbone(spec.name, weights=spec.weights, kwargs=dict(spec.kwargs), pretrained=pretrained,
                              device=device, base_dir=base_dir)


def _call(names: tuple[str, ...], first: bool, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    x = state["pixels"] if first else state["features"]
    for name in names:
        x = model.get_submodule(name)(x)
    return {"features": x}


def _vit_stem(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    # VisionTransformer.forward_features up to the blocks: patches, [CLS]/register tokens + positions, norm_pre.
    x = model._pos_embed(model.patch_embed(state["pixels"]))
    return {"features": model.norm_pre(model.patch_drop(x))}


def _vit_head(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.forward_head(model.norm(state["features"]), pre_logits=True)}


def _convnext_head(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model.forward_head(model.norm_pre(state["features"]), pre_logits=True)}


def _blocks(prefix: str, count: int) -> list[GroupDef]:
    return [GroupDef(f"{prefix}{i}", (f"{prefix}{i}",), partial(_call, (f"{prefix}{i}",), False)) for i in count]


def timm_layout(model: nn.Module) -> tuple[list[GroupDef], str]:
    """The groups and family (``cnn``/``vit``) of a supported timm model class.

    Raises:
        SpecError: the model class has no layout here.
    """
    kind = type(model).__name__
    if kind == "ResNet":
        stem = ("conv1", "bn1", "act1", "maxpool")
        return [GroupDef("stem", stem, partial(_call, stem, True)), *_blocks("layer", range(1, 5))], "cnn"
    if kind == "ConvNeXt":
        return ([GroupDef("stem", ("stem",), partial(_call, ("stem",), True)),
                 *_blocks("stages.", range(len(model.stages))),
                 GroupDef("head.norm", ("norm_pre", "head"), _convnext_head)], "cnn")
    if kind == "VisionTransformer":
        direct = tuple(n for n in ("cls_token", "reg_token", "pos_embed") if getattr(model, n, None) is not None)
        stem = GroupDef("stem", (*direct, "patch_embed", "pos_drop", "patch_drop", "norm_pre"), _vit_stem)
        return ([stem, *_blocks("blocks.", range(len(model.blocks))),
                 GroupDef("norm", ("norm", "fc_norm", "head_drop"), _vit_head)], "vit")
    raise SpecError(f"backbone.name: timm model class {kind} has no layer-group layout (supported classes: "
                    "ResNet, ConvNeXt, VisionTransformer); use one of those models or the module kind with an adapter")


def check_against_matcher(model: nn.Module, groups: list[GroupDef]) -> None:
    """Each group's parameters lie in one coarse ``group_matcher`` group, in increasing matcher order.

    Raises:
        RuntimeError: the layout no longer matches timm's own grouping (a timm release changed the model).
    """
    from timm.models import group_parameters

    matcher = group_parameters(model, model.group_matcher(coarse=True))
    ordinal = {name: k for k, names in matcher.items() for name in names}
    last = -1
    for group in groups:
        params = [n for m in group.modules for n in ([m] if m in model._parameters else
                  [f"{m}.{p}" for p, _ in model.get_submodule(m).named_parameters()])]
        found = {ordinal[n] for n in params}
        if len(found) > 1 or (found and min(found) < last):
            raise RuntimeError(f"timm layout of {type(model).__name__}: group '{group.name}' spans matcher groups "
                               f"{sorted(found)}; the layout needs updating for this timm release")
        last = max(found, default=last)


def _is_file(weights: str) -> bool:
    return is_package_path(weights) or weights.endswith(_FILE_SUFFIXES) or "/" in weights or "\\" in weights


def _create(name: str, tag: str | None, kwargs: dict[str, Any], download: bool, meta: bool) -> nn.Module:
    import timm

    full = name if tag in (None, "default") else f"{name}.{tag}"
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return timm.create_model(full, pretrained=download, **kwargs)
    except TypeError as exc:
        raise SpecError(f"backbone.kwargs: timm.create_model('{full}') rejected the arguments ({exc}); "
                        "fix backbone.kwargs") from exc
    except (OSError, RuntimeError, ValueError) as exc:
        if not download:
            raise
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunError(f"backbone.weights: cannot fetch timm weights '{full}' ({reason}); run once online to "
                       "cache them, or set backbone.weights to a local state-dict file, or null") from exc


def _check_name(name: str, weights: str | None) -> str | None:
    """The pretrained tag ``weights`` names (None for a file or no weights)."""
    import timm

    if name not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise SpecError(f"backbone.name: timm has no model '{name}'; {hint}")
    if weights is None or _is_file(weights):
        return None
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
    if weights != "default" and weights not in tags:
        raise SpecError(f"backbone.weights: timm has no pretrained '{name}.{weights}' (tags: "
                        f"{', '.join(tags) or 'none'}); use one of these, 'default', a state-dict file, or null")
    return weights


def load_timm_backbone(name: str, *, weights: str | None = None, kwargs: dict[str, Any] | None = None,
                       pretrained: bool = True, device: str | torch.device = "cpu",
                       base_dir: str | Path | None = None) -> Backbone:
    """Build a timm backbone.

    Args:
        name: timm model name (``resnet50``, ``convnext_tiny``, ``vit_small_patch16_224``).
        weights: pretrained tag (or ``default``), state-dict file (path or ``pkg:``), or None (random init).
        kwargs: extra ``timm.create_model`` arguments (``img_size``, ``drop_path_rate``...).
        pretrained: load ``weights``; False (or ``device="meta"``) reads no weights.
        device: where the parameters live.
        base_dir: folder relative weight paths start from.
    """
    try:
        import timm  # noqa: F401
    except ImportError as exc:
        raise SpecError("backbone.kind: timm is not installed (got kind 'timm'); pip install 'timm>=1.0'") from exc
    tag = _check_name(name, weights)
    path = existing_path(weights, base_dir, "backbone.weights") if weights and tag is None else None
    meta = torch.device(device).type == "meta"
    loaded = bool(pretrained and not meta and weights)
    model = _create(name, tag, dict(kwargs or {}), download=loaded and tag is not None, meta=meta)
    classifier = model.pretrained_cfg.get("classifier") or "head"
    model.reset_classifier(0)  # the classifier becomes Identity; the head replaces it
    groups, family = timm_layout(model)
    check_against_matcher(model, groups)
    report: dict[str, Any] = {}
    if loaded and path is not None:
        state = load_state_dict_file(path, "backbone.weights")
        report = load_into(model, state, where="backbone.weights", strict=True, dropped=(classifier,),
                           strict_fix=f"use a state dict saved from timm's {name}")
    if not meta:
        model = model.to(device)
    cfg = model.pretrained_cfg
    size = int(kwargs.get("img_size", 0) if kwargs else 0) or int(cfg.get("input_size", (3, 224, 224))[-1])
    # feature_dim None: measured from the final state (a head with pre-logits layers may change the width).
    return Backbone(model, groups, modality="image", family=family, feature_dim=None,
                    boundary_shape_fn=image_boundary_shape,
                    preprocessing={"image_size": size, "mean": list(cfg.get("mean", IMAGENET_MEAN)),
                                   "std": list(cfg.get("std", IMAGENET_STD))},
                    info={"kind": "timm", "name": name, "weights": weights, "pretrained": loaded,
                          "load_report": report})
