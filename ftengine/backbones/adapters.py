"""Adapters: how a ``kind: module`` model splits into layer groups.

An adapter is a function ``adapter(model) -> Adaptation``. Registered names: ``sequential`` and
``efficientnet_lite``; ``backbone.adapter`` may also name a user function ``package.module:function``,
which may return an :class:`Adaptation`, a list of :class:`GroupDef`, or a list of
``(group_name, module_or_modules)`` pairs (each group then applies its modules in order).
Image groups read ``state["pixels"]`` (group 0) or ``state["features"]`` and write ``state["features"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

from ftengine.backbones.backbone import GroupDef, State
from ftengine.backbones.loading import import_object
from ftengine.errors import SpecError


@dataclass(frozen=True)
class Adaptation:
    """What an adapter says about a model.

    Attributes:
        groups: the layer groups, input to output.
        drop: submodules the head replaces (classifiers); they become ``nn.Identity`` and their
            checkpoint keys are ignored.
        preprocessing: defaults for ``image_size``/``mean``/``std`` (the spec's values win).
        feature_dim: channels of the final features; None: measured with a fake forward pass.
    """

    groups: list[GroupDef]
    drop: tuple[str, ...] = ()
    preprocessing: dict[str, Any] = field(default_factory=dict)
    feature_dim: int | None = None


Adapter = Callable[[nn.Module], Adaptation]
ADAPTERS: dict[str, Adapter] = {}


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """Decorator: register an adapter under ``name``."""
    def add(fn: Adapter) -> Adapter:
        ADAPTERS[name] = fn
        return fn
    return add


def run_modules(names: tuple[str, ...], first: bool, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    """Group runner: apply the named submodules in order to the image tensor."""
    x = state["pixels"] if first else state["features"]
    for name in names:
        x = model.get_submodule(name)(x)
    return {"features": x}


_HEAD_LAYERS = (nn.Linear, nn.Dropout, nn.Flatten, nn.Identity, nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid,
                nn.Softmax, nn.LogSoftmax, nn.Hardswish, nn.SiLU)


def _is_classifier(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    layers = [m for m in module.modules() if not list(m.children())]
    return bool(layers) and isinstance(layers[-1], nn.Linear) and all(isinstance(m, _HEAD_LAYERS) for m in layers)


@register_adapter("sequential")
def sequential_adapter(model: nn.Module) -> Adaptation:
    """Top-level children in order: each child with parameters starts a group named after it.

    Rules: parameter-free children (activations, pooling, flatten) join the group before them
    (or the first group); the last child with parameters is the classifier and is dropped when it is
    an ``nn.Linear`` or a block of only Linear/Dropout/Flatten/activation layers ending in a Linear,
    together with anything after it. Assumes the model's forward applies its children in order (true
    for ``nn.Sequential``).
    """
    children = list(model.named_children())
    with_params = [i for i, (_, m) in enumerate(children) if next(m.parameters(), None) is not None]
    drop: tuple[str, ...] = ()
    if len(with_params) > 1 and _is_classifier(children[with_params[-1]][1]):
        drop = tuple(name for name, _ in children[with_params[-1]:])
        children = children[:with_params[-1]]
    groups: list[tuple[str, list[str]]] = []
    for name, module in children:
        if next(module.parameters(), None) is not None or not groups:
            groups.append((name, [name]))
        else:
            groups[-1][1].append(name)
    return Adaptation([GroupDef(name, tuple(mods), partial(run_modules, tuple(mods), i == 0))
                       for i, (name, mods) in enumerate(groups)], drop=drop)


def _effnet_stem(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model._swish(model._bn0(model._conv_stem(state["pixels"])))}


def _effnet_rate(model: nn.Module, index: int) -> float:
    # EfficientNet.extract_features: the rate grows linearly with the block index.
    rate = model._global_params.drop_connect_rate
    return rate * float(index) / len(model._blocks) if rate else rate


def _effnet_block(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    block = model._blocks[index]
    return {"features": block(state["features"], drop_connect_rate=_effnet_rate(model, index))}


def _effnet_head(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {"features": model._swish(model._bn1(model._conv_head(state["features"])))}


@register_adapter("efficientnet_lite")
def efficientnet_lite_adapter(model: nn.Module) -> Adaptation:
    """``efficientnet_lite_pytorch.EfficientNet``: ``stem``, ``_blocks.0`` .. ``_blocks.N-1``, ``conv_head``.

    Reproduces ``extract_features`` (drop-connect schedule included); pooling, dropout and ``_fc``
    are the head's job, so ``_fc`` is dropped. Inputs are RGB in [0, 1] normalised with mean = std = 0.5.
    """
    missing = [n for n in ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_swish", "_global_params")
               if not hasattr(model, n)]
    if missing:
        raise SpecError(f"backbone.adapter: efficientnet_lite needs an efficientnet_lite_pytorch EfficientNet "
                        f"(got {type(model).__name__} without {', '.join(missing)}); use another adapter")
    groups = [GroupDef("stem", ("_conv_stem", "_bn0", "_swish"), _effnet_stem)]
    groups += [GroupDef(f"_blocks.{i}", (f"_blocks.{i}",), partial(_effnet_block, i),
                        has_dropout=bool(_effnet_rate(model, i)) or None) for i in range(len(model._blocks))]
    groups.append(GroupDef("conv_head", ("_conv_head", "_bn1", "_swish"), _effnet_head))
    size = model._global_params.image_size
    return Adaptation(groups, drop=("_fc",), feature_dim=model._bn1.num_features,
                      preprocessing={"image_size": size, "mean": [0.5] * 3, "std": [0.5] * 3})


def _from_pairs(model: nn.Module, pairs: Sequence[tuple[str, Any]], where: str) -> list[GroupDef]:
    names = {id(m): n for n, m in model.named_modules() if n}
    groups = []
    for i, (group, modules) in enumerate(pairs):
        modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        unknown = [type(m).__name__ for m in modules if id(m) not in names]
        if unknown:
            raise SpecError(f"{where}: group '{group}' lists modules that are not submodules of the model "
                            f"({', '.join(unknown)}); return the model's own submodules")
        mods = tuple(names[id(m)] for m in modules)
        groups.append(GroupDef(str(group), mods, partial(run_modules, mods, i == 0)))
    return groups


def resolve_adapter(name: str) -> Adapter:
    """A registered adapter, or a user function ``package.module:function`` wrapped to return an Adaptation."""
    if name in ADAPTERS:
        return ADAPTERS[name]
    if ":" not in name:
        raise SpecError(f"backbone.adapter: unknown adapter '{name}' (registered: {', '.join(sorted(ADAPTERS))}); "
                        "use one of these or 'package.module:function'")
    fn = import_object(name, "backbone.adapter")

    def user_adapter(model: nn.Module) -> Adaptation:
        result = fn(model)
        if isinstance(result, Adaptation):
            return result
        items = list(result) if isinstance(result, (list, tuple)) else None
        if items and all(isinstance(g, GroupDef) for g in items):
            return Adaptation(items)
        if items and all(isinstance(g, tuple) and len(g) == 2 for g in items):
            return Adaptation(_from_pairs(model, items, "backbone.adapter"))
        raise SpecError(f"backbone.adapter: '{name}' returned {type(result).__name__}; return an Adaptation, "
                        "a list of GroupDef, or a list of (name, module) pairs")

    return user_adapter
