"""Fixtures for the data tests: stand-in backbones.

The data package needs only a few backbone attributes (``tokenizer``, ``preprocessing``, ``modality``),
so the tests pass small namespaces instead of loading model weights; text tests use the real MiniLM tokenizer.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture(scope="session")
def text_backbone(minilm_tokenizer: Any) -> SimpleNamespace:
    """A text backbone stand-in carrying the real MiniLM tokenizer."""
    return SimpleNamespace(tokenizer=minilm_tokenizer, modality="text", family="encoder", feature_dim=384,
                           preprocessing=None)


@pytest.fixture
def image_backbone() -> SimpleNamespace:
    """An image backbone stand-in with ImageNet-style preprocessing."""
    return SimpleNamespace(tokenizer=None, modality="image", family="cnn", feature_dim=8,
                           preprocessing={"image_size": 16, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]})
