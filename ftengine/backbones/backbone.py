"""The Backbone wrapper: an original model split into ordered, named layer groups.

A builder (one per spec ``kind``) constructs the original model and describes it as a list of
:class:`GroupDef` (which submodules form the group, and a runner that applies it). The Backbone
registers the model's top-level children under their own names, so parameter names are exactly
the original model's (``encoder.layer.3.attention.self.query.weight`` for BERT, ``layer1.0.conv1.weight``
for a ResNet) with no wrapper prefix. The original model object stays reachable as ``backbone.model``
(for ``save_pretrained`` and the like) but is not registered a second time.

Runners are plain functions ``run(model, state, ctx) -> state`` that receive the original model as
an argument instead of closing over it, so ``copy.deepcopy(backbone)`` yields an independent copy whose
runners act on the copied modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

State = dict[str, Tensor]
GroupRunner = Callable[[nn.Module, State, dict[str, Any]], State]
"""``run(model, state, ctx) -> state``. ``ctx`` is scratch space shared by the groups of one
``forward_from`` call (e.g. the attention mask, built once and reused by every layer)."""
ShapeFn = Callable[["Backbone", int, int | None], tuple[int, ...]]


@dataclass(frozen=True)
class GroupDef:
    """How a builder or adapter describes one layer group of a wrapped model.

    Attributes:
        name: group name used by freeze selectors (``encoder.layer.3``, ``layer1``, ``stem``).
        modules: dotted names of the wrapped model's submodules that make up the group, in run order.
            Every parameter under them belongs to this group (a shared module may appear in several
            groups only if it has no parameters, e.g. an activation). A name may also be a parameter the
            model holds directly (a ViT's ``cls_token``, ``pos_embed``).
        run: applies the group to the state entering it.
        has_dropout: force the stochasticity flag (e.g. functional drop-connect); None: detect
            ``nn.Dropout`` modules with ``p > 0``.
    """

    name: str
    modules: tuple[str, ...]
    run: GroupRunner
    has_dropout: bool | None = None


@dataclass(frozen=True)
class LayerGroup:
    """A named, ordered slice of the backbone (names and numbers only).

    Attributes:
        name: the group name.
        param_names: parameter names as in ``backbone.named_parameters()``.
        num_params: number of scalar parameters.
        has_batchnorm: the group holds BatchNorm layers (running statistics change in train mode).
        has_dropout: the group is stochastic in train mode (dropout, drop-connect).
        module_names: the submodules forming the group (as in ``backbone.named_modules()``).
    """

    name: str
    param_names: tuple[str, ...]
    num_params: int
    has_batchnorm: bool
    has_dropout: bool
    module_names: tuple[str, ...] = ()


def _is_stochastic(module: nn.Module) -> bool:
    # Dropout layers, and stochastic depth (timm's DropPath, transformers' ConvNextDropPath, Dinov2DropPath...).
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
               or type(m).__name__.endswith("DropPath") and (getattr(m, "drop_prob", 0) or 0) > 0
               for m in module.modules())


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Backbone(nn.Module):
    """A pretrained model exposed as ordered layer groups that can run from any group boundary.

    Built by :func:`ftengine.backbones.build_backbone`; not subclassed per kind.

    Attributes:
        modality: ``"text"`` or ``"image"``.
        family: ``"encoder"``, ``"decoder"`` (text), ``"cnn"`` or ``"vit"`` (images; a ``vit`` ends in one
            vector per image, its [CLS] token after the final norm).
        feature_dim: channels / hidden size of the final state that feeds the head (builders may pass
            None to have it measured with a fake forward pass).
        groups: the layer groups, input to output.
        preprocessing: ``dict(image_size, mean, std)`` for images, None for text.
        info: facts about how the backbone was built (source, weights, load report).
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[GroupDef],
        *,
        modality: Literal["text", "image"],
        family: Literal["encoder", "decoder", "cnn", "vit"],
        feature_dim: int | None,
        boundary_shape_fn: ShapeFn,
        tokenizer_loader: Callable[[], Any] | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not groups:
            raise ValueError("a backbone needs at least one layer group")
        # Not registered: its children are registered below under their own names.
        object.__setattr__(self, "_model", model)
        for top in dict.fromkeys(m.split(".")[0] for g in groups for m in g.modules):
            if top in model._parameters:  # a parameter of the model itself: the same Parameter object
                self.register_parameter(top, model._parameters[top])
            else:
                self.add_module(top, model.get_submodule(top))
        self._defs = tuple(groups)
        self.groups: list[LayerGroup] = self._describe_groups()
        self.modality = modality
        self.family = family
        self.preprocessing = dict(preprocessing) if preprocessing is not None else None
        self.info = dict(info or {})
        self._boundary_shape_fn = boundary_shape_fn
        self._tokenizer_loader = tokenizer_loader
        self._tokenizer: Any = None
        # None: measure it (first dimension of the final state, e.g. channels of (C, H, W)).
        self.feature_dim = int(feature_dim) if feature_dim is not None else self.boundary_shape(len(groups))[0]

    @property
    def model(self) -> nn.Module:
        """The original model (shares every module with this wrapper)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The text tokenizer, loaded on first use (None for image backbones)."""
        if self._tokenizer is None and self._tokenizer_loader is not None:
            self._tokenizer = self._tokenizer_loader()
        return self._tokenizer

    @property
    def group_names(self) -> list[str]:
        """Group names, input to output."""
        return [g.name for g in self.groups]

    def group_index(self, name: str) -> int:
        """Position of the group called ``name``.

        Raises:
            KeyError: no such group (the message lists the groups).
        """
        for i, group in enumerate(self.groups):
            if group.name == name:
                return i
        raise KeyError(f"no layer group '{name}' (groups: {', '.join(self.group_names)})")

    def group_modules(self, name: str) -> list[nn.Module]:
        """The submodules of group ``name`` (for train/eval mode control; direct parameters are left out)."""
        return [self.get_submodule(m) for m in self._defs[self.group_index(name)].modules if m not in self._parameters]

    def embed(self, batch: Mapping[str, Tensor]) -> State:
        """Run group 0 on raw inputs (``input_ids``/``attention_mask``/``token_type_ids`` or ``pixels``)."""
        return self.forward_from(0, batch, stop=1)

    def forward_from(self, index: int, state: Mapping[str, Tensor], stop: int | None = None) -> State:
        """Run ``groups[index:stop]`` starting from the activations entering group ``index``.

        Args:
            index: first group to run; 0 means ``state`` holds raw inputs.
            state: text ``{"hidden" (B,T,H), "attention_mask" (B,T)}``, image ``{"features" (B,C,H,W)}``,
                or raw inputs for ``index == 0``.
            stop: group to stop before (default: run to the end).

        Returns:
            The state leaving group ``stop - 1`` (unchanged if ``index == stop``).
        """
        n = len(self._defs)
        stop = n if stop is None else stop
        if not 0 <= index <= stop <= n:
            raise IndexError(f"forward_from: need 0 <= index <= stop <= {n} (got index={index}, stop={stop})")
        out = dict(state)
        ctx: dict[str, Any] = {}
        for group in self._defs[index:stop]:
            out = group.run(self._model, out, ctx)
        return out

    def forward(self, batch: Mapping[str, Tensor]) -> State:
        """Run every group on raw inputs; the result feeds the head."""
        return self.forward_from(0, batch)

    def boundary_shape(self, index: int, example_len: int | None = None) -> tuple[int, ...]:
        """Per-example shape of the activations entering group ``index`` (for cache sizing).

        Args:
            index: boundary, 0..len(groups) (``len(groups)`` = the final state).
            example_len: tokens in the example (text; required) or image side in pixels
                (image; default ``preprocessing["image_size"]``).
        """
        if not 0 <= index <= len(self._defs):
            raise IndexError(f"boundary_shape: index must be in 0..{len(self._defs)} (got {index})")
        return self._boundary_shape_fn(self, index, example_len)

    def num_params(self) -> int:
        """Scalar parameters in the backbone."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"modality={self.modality}, family={self.family}, groups={len(self.groups)}"

    def _describe_groups(self) -> list[LayerGroup]:
        params = dict(self.named_parameters())  # canonical names: tied parameters appear once
        canonical = {id(p): name for name, p in params.items()}
        owner: dict[str, str] = {}
        groups: list[LayerGroup] = []
        for gdef in self._defs:
            names: dict[str, None] = {}
            modules = [self.get_submodule(m) for m in gdef.modules if m not in self._parameters]
            direct = [self._parameters[m] for m in gdef.modules if m in self._parameters]
            for p in [*direct, *(p for module in modules for p in module.parameters())]:
                names[canonical[id(p)]] = None
            for name in names:
                if name in owner:
                    raise ValueError(f"parameter '{name}' is in layer groups '{owner[name]}' and '{gdef.name}'")
                owner[name] = gdef.name
            groups.append(LayerGroup(
                name=gdef.name,
                param_names=tuple(names),
                num_params=sum(params[n].numel() for n in names),
                has_batchnorm=any(_has_batchnorm(m) for m in modules),
                has_dropout=gdef.has_dropout if gdef.has_dropout is not None else any(map(_is_stochastic, modules)),
                module_names=gdef.modules,
            ))
        orphans = [n for n in canonical.values() if n not in owner]
        if orphans:
            shown = ", ".join(orphans[:5]) + (f" (+{len(orphans) - 5} more)" if len(orphans) > 5 else "")
            raise ValueError(f"parameters in no layer group: {shown}")
        dupes = [g.name for i, g in enumerate(groups) if g.name in {h.name for h in groups[:i]}]
        if dupes:
            raise ValueError(f"duplicate layer group names: {', '.join(dupes)}")
        return groups


def text_boundary_shape(backbone: Backbone, index: int, example_len: int | None) -> tuple[int, ...]:
    """Text boundaries: token ids ``(T,)`` before group 0, hidden states ``(T, H)`` after."""
    if example_len is None:
        raise ValueError("boundary_shape: text backbones need example_len (tokens in the example)")
    return (example_len,) if index == 0 else (example_len, backbone.feature_dim)


def image_boundary_shape(backbone: Backbone, index: int, example_len: int | None) -> tuple[int, ...]:
    """Image boundaries: found by running the groups on a fake one-image batch (no compute, no memory).

    One fake pass records every boundary for a given image side; results are cached on the backbone.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    side = example_len or (backbone.preprocessing or {}).get("image_size")
    if not side:
        raise ValueError("boundary_shape: no image size (pass example_len or set preprocessing image_size)")
    cache: dict[int, list[tuple[int, ...]]] = backbone.__dict__.setdefault("_image_shapes", {})
    if side not in cache:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        # Eval mode: a one-image batch must not touch BatchNorm statistics (nor fail on 1x1 maps).
        modes = {m: m.training for m in backbone.modules()}
        backbone.eval()
        # Meta parameters take meta inputs directly; real ones need fake inputs (no compute either way).
        fake = FakeTensorMode(allow_non_fake_inputs=True) if device.type != "meta" else contextlib.nullcontext()
        try:
            with fake, torch.no_grad():
                state: State = {"pixels": torch.empty(1, 3, side, side, device=device)}
                shapes = [(3, side, side)]
                for k in range(len(backbone.groups)):
                    state = backbone.forward_from(k, state, stop=k + 1)
                    shapes.append(tuple(state["features"].shape[1:]))
        finally:
            for module, training in modes.items():
                module.training = training
        cache[side] = shapes
    return cache[side][index]
