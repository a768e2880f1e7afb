"""Backbone sections: where the pretrained model comes from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ftengine.spec.base import MAX_PIXELS, StrictModel


class HFBackboneSpec(StrictModel):
    """A Hugging Face transformers model (BERT-family encoder or GPT-2-style decoder)."""

    kind: Literal["hf"] = "hf"
    source: str
    """Local model directory, `pkg:<package>/<dir>` inside an installed package, or a hub id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `source` is a hub id."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run (only for sources you trust)."""


class TorchvisionBackboneSpec(StrictModel):
    """A torchvision classification model; its classifier is replaced by the head."""

    kind: Literal["torchvision"] = "torchvision"
    arch: str
    """Architecture name, e.g. `resnet18`, `resnet34`, `resnet50`."""
    weights: str | None = None
    """Named torchvision weights (`DEFAULT`, `IMAGENET1K_V2`), a local state-dict file, or null for random init."""


class ModuleBackboneSpec(StrictModel):
    """Any `nn.Module` built by a Python callable, with weights from a checkpoint file."""

    kind: Literal["module"] = "module"
    factory: str
    """`package.module:Callable` or `package.module:Class.classmethod` that returns the model."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the factory."""
    checkpoint: str | None = None
    """State-dict file (path or `pkg:<package>/<file>`) loaded after construction; null keeps the factory's weights."""
    checkpoint_key: str | None = None
    """Key of the state dict inside the checkpoint, e.g. `state_dict` or `model`."""
    strict: bool = False
    """Require checkpoint keys to match the model exactly (a dropped classifier is tolerated when false)."""
    adapter: str = "sequential"
    """How the model splits into layer groups: `sequential`, `efficientnet_lite`, or `package.module:function`."""
    image_size: int | None = Field(default=None, gt=0, le=MAX_PIXELS)
    """Input resolution the model expects (pixels per side)."""
    mean: list[float] | None = None
    """Per-channel normalisation mean (default ImageNet)."""
    std: list[float] | None = None
    """Per-channel normalisation std (default ImageNet)."""

    @field_validator("factory")
    @classmethod
    def _factory_shape(cls, value: str) -> str:
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError("must look like 'package.module:Callable'")
        return value


class TimmBackboneSpec(StrictModel):
    """A timm image model (`timm.create_model`); its classifier is replaced by the head."""

    kind: Literal["timm"] = "timm"
    name: str
    """timm model name, e.g. `resnet50`, `convnext_tiny`, `vit_small_patch16_224`."""
    weights: str | None = None
    """A pretrained tag of the model (`a1_in1k` for `resnet50.a1_in1k`, or `default`), a local state-dict
    file (path or `pkg:`), or null for random init."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra `timm.create_model` arguments, e.g. `{img_size: 384, drop_path_rate: 0.1}`."""


BackboneSpec = HFBackboneSpec | TorchvisionBackboneSpec | ModuleBackboneSpec | TimmBackboneSpec
