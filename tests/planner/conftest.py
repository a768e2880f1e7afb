"""Planner test fixtures: stand-in backbones (see planner_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from planner_fakes import FakeBackbone, fake_bert, fake_resnet


@pytest.fixture
def bert() -> FakeBackbone:
    return fake_bert()


@pytest.fixture
def resnet() -> FakeBackbone:
    return fake_resnet()


@pytest.fixture(scope="session")
def structure():
    """`structure(spec_path) -> (spec, backbone)`: the real backbone built on the meta device (no weights)."""
    from ftengine.backbones import build_backbone
    from ftengine.backbones.trust import allowing
    from ftengine.spec import load_spec

    def build(path: Path, overrides: tuple[str, ...] = ()):
        spec = load_spec(path, list(overrides))
        with allowing(["efficientnet_lite_pytorch"]):  # the example's factory (users: --allow-module)
            return spec, build_backbone(spec.backbone, pretrained=False, device="meta", base_dir=Path(path).parent)
    return build
