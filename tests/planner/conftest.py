"""Planner test fixtures: stand-in backbones (see planner_fakes.py)."""

from __future__ import annotations

import pytest
from planner_fakes import FakeBackbone, fake_bert, fake_resnet


@pytest.fixture
def bert() -> FakeBackbone:
    return fake_bert()


@pytest.fixture
def resnet() -> FakeBackbone:
    return fake_resnet()
