"""module backbones with the sequential adapter and user adapter functions (random-init models).

References: the model's own forward (an ``nn.Sequential`` without its classifier) and torchvision's
ResNet forward captured at the avgpool output.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
import torchvision

from ftengine.backbones import build_backbone
from ftengine.errors import SpecError
from ftengine.spec import ModuleBackboneSpec

USER_MODULE = '''
import torch
from torch import nn


def tiny_cnn(num_classes=10, width=8):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Sequential(nn.Dropout(0.1), nn.Linear(2 * width, num_classes)),
    )


def two_groups(model):
    return [("low", [model[0], model[1], model[2]]), ("high", [model[3], model[4]])]


def not_groups(model):
    return 42


def overlapping_groups(model):
    return [("a", model[0]), ("b", [model[0], model[1]])]
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usercode")
    (folder / "ftengine_test_models.py").write_text(textwrap.dedent(USER_MODULE))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield "ftengine_test_models"


def _spec(factory: str, **fields) -> ModuleBackboneSpec:
    return ModuleBackboneSpec(factory=factory, **fields)


@torch.no_grad()
def test_sequential_groups_and_classifier_rule(user_module):
    backbone = build_backbone(_spec(f"{user_module}:tiny_cnn", kwargs={"num_classes": 5})).eval()
    # Parameter-free children join the group before them; the last Dropout+Linear block is the classifier.
    assert backbone.group_names == ["0", "1", "3"]
    assert backbone.groups[1].module_names == ("1", "2")
    assert backbone.groups[2].module_names == ("3", "4", "5", "6")
    assert isinstance(backbone.model[7], torch.nn.Identity)
    assert backbone.feature_dim == 16
    pixels = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(backbone({"pixels": pixels})["features"], backbone.model[:7](pixels))
    middle = backbone.model[:3](pixels)
    torch.testing.assert_close(backbone.forward_from(2, {"features": middle})["features"], backbone.model[:7](pixels))
    assert backbone.preprocessing == {"image_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert backbone.boundary_shape(2, 12) == (8, 12, 12)


@torch.no_grad()
def test_sequential_on_torchvision_resnet():
    torch.manual_seed(0)
    backbone = build_backbone(_spec("torchvision.models:resnet18", image_size=64, mean=[0.5] * 3, std=[0.25] * 3))
    backbone.eval()
    assert backbone.group_names == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    assert backbone.preprocessing == {"image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}
    reference = backbone.model  # the same modules, run by torchvision's own forward
    seen = {}
    reference.avgpool.register_forward_hook(lambda mod, args, out: seen.__setitem__("pooled", out))
    pixels = torch.randn(2, 3, 64, 64)
    reference(pixels)
    torch.testing.assert_close(backbone({"pixels": pixels})["features"], seen["pooled"])
    assert backbone.feature_dim == 512


@torch.no_grad()
def test_user_adapter_function(user_module):
    backbone = build_backbone(_spec(f"{user_module}:tiny_cnn", adapter=f"{user_module}:two_groups")).eval()
    assert backbone.group_names == ["low", "high"]
    assert backbone.groups[0].module_names == ("0", "1", "2")
    pixels = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(backbone({"pixels": pixels})["features"], backbone.model[:5](pixels))
    # Modules outside every group (pool, flatten, classifier) are not part of the backbone.
    assert backbone.num_params() == sum(p.numel() for p in backbone.model[:5].parameters())


def test_user_adapter_errors(user_module):
    with pytest.raises(SpecError, match=rf"^backbone.adapter: '{user_module}:not_groups' returned int; "):
        build_backbone(_spec(f"{user_module}:tiny_cnn", adapter=f"{user_module}:not_groups"))
    with pytest.raises(SpecError, match=rf"^backbone.adapter: '{user_module}' has no attribute 'nope' "):
        build_backbone(_spec(f"{user_module}:tiny_cnn", adapter=f"{user_module}:nope"))
    with pytest.raises(SpecError) as err:
        build_backbone(_spec(f"{user_module}:tiny_cnn", adapter=f"{user_module}:overlapping_groups"))
    assert str(err.value) == (f"backbone.adapter: '{user_module}:overlapping_groups' gave unusable layer groups for "
                              "Sequential (parameter '0.weight' is in layer groups 'a' and 'b'); every parameter must "
                              "be in one group and the groups must chain")


def test_factory_must_return_a_module():
    with pytest.raises(SpecError) as err:
        build_backbone(_spec("collections:OrderedDict"))
    assert str(err.value) == ("backbone.factory: collections:OrderedDict returned a OrderedDict, not an nn.Module; "
                              "name a callable that returns the model")


def test_meta_build_matches_loaded(user_module):
    meta = build_backbone(_spec(f"{user_module}:tiny_cnn"), pretrained=False, device="meta")
    real = build_backbone(_spec(f"{user_module}:tiny_cnn"))
    assert meta.groups == real.groups
    assert meta.feature_dim == real.feature_dim == 16


def test_torchvision_meta_counts_equal_the_kind():
    via_module = build_backbone(_spec("torchvision.models:resnet50"), pretrained=False, device="meta")
    with torch.device("meta"):
        full = torchvision.models.resnet50()
    assert via_module.num_params() == sum(p.numel() for n, p in full.named_parameters() if not n.startswith("fc."))
