"""``build_backbone``: one registered builder per spec ``kind``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from ftengine.backbones.backbone import Backbone
from ftengine.errors import SpecError


class BackboneBuilder(Protocol):
    """Turns one backbone spec section into a Backbone (reads the section's fields, nothing else)."""

    def __call__(self, spec: Any, *, pretrained: bool, device: str | torch.device,
                 base_dir: str | Path | None) -> Backbone: ...


BUILDERS: dict[str, BackboneBuilder] = {}


def register_builder(kind: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register ``fn`` as the builder for backbone ``kind``."""
    def add(fn: BackboneBuilder) -> BackboneBuilder:
        BUILDERS[kind] = fn
        return fn
    return add


def build_backbone(spec: Any, *, pretrained: bool = True, device: str | torch.device = "cpu",
                   base_dir: str | Path | None = None) -> Backbone:
    """Build the backbone a spec section describes.

    Args:
        spec: ``spec.backbone`` (``HFBackboneSpec``, ``TorchvisionBackboneSpec`` or ``ModuleBackboneSpec``).
        pretrained: load weights; ``pretrained=False, device="meta"`` builds the structure only
            (no checkpoint is read, no memory is allocated) for validation and planning.
        device: where the parameters live.
        base_dir: the spec file's folder; relative paths in the spec start there (default: cwd).

    Raises:
        SpecError: the spec section cannot be built (bad path, import, arch, weights name...).
        RunError: an environment problem (e.g. a hub id that cannot be fetched offline).
    """
    kind = getattr(spec, "kind", None)
    builder = BUILDERS.get(kind)  # type: ignore[arg-type]
    if builder is None:
        raise SpecError(f"backbone.kind: unknown backbone kind '{kind}'; use one of {', '.join(sorted(BUILDERS))}")
    return builder(spec, pretrained=pretrained, device=device, base_dir=base_dir)
