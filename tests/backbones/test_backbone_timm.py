"""timm backbones: groups from timm's group_matcher, file and named weights, forward_from at every boundary.

No timm weights are available offline, so models are random-init (seeded) and file weights are a saved
random state dict. The reference is a separately built timm model loaded from the same file, run by
timm's own ``forward_features`` / ``forward_head(pre_logits=True)``; the states entering each group are
captured from that forward with pre-hooks.
"""

from __future__ import annotations

import pytest
import torch

from ftengine.backbones import build_backbone
from ftengine.errors import SpecError
from ftengine.spec.backbone import TimmBackboneSpec

timm = pytest.importorskip("timm")
TOL = {"rtol": 1e-4, "atol": 1e-5}
# Small images keep these fast: a 64x64 input for every model (the ViT is built for that size).
MODELS = {"resnet50": {}, "convnext_tiny": {}, "vit_small_patch16_224": {"img_size": 64}}
GROUPS = {"resnet50": ["stem", "layer1", "layer2", "layer3", "layer4"],
          "convnext_tiny": ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "head.norm"],
          "vit_small_patch16_224": ["stem", *[f"blocks.{i}" for i in range(12)], "norm"]}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, object]:
    files = {}
    for name, kwargs in MODELS.items():
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp("timm") / f"{name}.pth"
        torch.save(timm.create_model(name, **kwargs).state_dict(), path)  # classifier keys included
        files[name] = path
    return files


def _reference(name: str, path) -> torch.nn.Module:
    model = timm.create_model(name, **MODELS[name])
    model.load_state_dict(torch.load(path))
    return model.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
@torch.no_grad()
def test_forward_from_every_boundary(name, weight_files):
    backbone = build_backbone(TimmBackboneSpec(name=name, weights=str(weight_files[name]),
                                               kwargs=MODELS[name])).eval()
    assert backbone.group_names == GROUPS[name]
    reference = _reference(name, weight_files[name])
    seen: dict[int, torch.Tensor] = {}
    for k, group in enumerate(backbone.groups):
        if k:
            first = group.module_names[0]
            reference.get_submodule(first).register_forward_pre_hook(lambda m, args, k=k: seen.__setitem__(k, args[0]))
    pixels = torch.randn(2, 3, 64, 64)
    features = reference.forward_features(pixels)
    expected = features if name == "resnet50" else reference.forward_head(features, pre_logits=True)
    for k in range(len(backbone.groups)):
        state = {"pixels": pixels} if k == 0 else {"features": seen[k]}
        torch.testing.assert_close(backbone.forward_from(k, state)["features"], expected, **TOL)
    assert backbone.feature_dim == expected.shape[1] == reference.num_features
    assert backbone.family == ("vit" if name.startswith("vit") else "cnn")
    classifier = sum(p.numel() for n, p in reference.named_parameters()
                     if n.startswith(reference.pretrained_cfg["classifier"] + "."))
    assert backbone.num_params() == sum(p.numel() for p in reference.parameters()) - classifier


def test_groups_follow_the_matcher_and_hold_direct_parameters(weight_files):
    from timm.models import group_parameters

    vit = build_backbone(TimmBackboneSpec(name="vit_small_patch16_224", kwargs={"img_size": 64}),
                         pretrained=False, device="meta")
    assert vit.groups[0].param_names[:2] == ("cls_token", "pos_embed")  # held by the model itself
    assert vit.groups[-1].param_names == ("norm.weight", "norm.bias")
    resnet = build_backbone(TimmBackboneSpec(name="resnet50"), pretrained=False, device="meta")
    matcher = group_parameters(resnet.model, resnet.model.group_matcher(coarse=True))
    assert [list(g.param_names) for g in resnet.groups] == [matcher[k] for k in sorted(matcher)][:5]
    assert resnet.boundary_shape(5, 64) == (2048, 2, 2)


def test_file_weights_load_and_report_the_classifier(weight_files):
    backbone = build_backbone(TimmBackboneSpec(name="convnext_tiny", weights=str(weight_files["convnext_tiny"])))
    saved = torch.load(weight_files["convnext_tiny"])
    name = "stages.2.blocks.1.conv_dw.weight"
    assert torch.equal(backbone.get_parameter(name), saved[name])
    assert torch.equal(backbone.get_parameter("head.norm.weight"), saved["head.norm.weight"])
    assert backbone.info["load_report"]["ignored"] == ["head.fc.weight", "head.fc.bias"]
    assert backbone.info["pretrained"] is True


def test_named_weights_set_preprocessing_without_loading(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a structure-only build must not download")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_download)
    meta = build_backbone(TimmBackboneSpec(name="vit_small_patch16_224", weights="augreg_in21k_ft_in1k"),
                          pretrained=False, device="meta")
    assert meta.preprocessing == {"image_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert meta.feature_dim == 384


def test_named_weights_offline_is_a_clear_run_error(monkeypatch):
    from ftengine.errors import RunError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RunError) as err:
        build_backbone(TimmBackboneSpec(name="resnet18", weights="a1_in1k"))
    (line,) = err.value.problems
    assert line.startswith("backbone.weights: cannot fetch timm weights 'resnet18.a1_in1k' (")
    assert line.endswith("; run once online to cache them, or set backbone.weights to a local state-dict file, or null")


def test_errors_are_one_clear_line():
    with pytest.raises(SpecError, match=r"^backbone.name: timm has no model 'resnet5'; did you mean resnet50, "):
        build_backbone(TimmBackboneSpec(name="resnet5"), pretrained=False, device="meta")
    with pytest.raises(SpecError, match=r"^backbone.weights: timm has no pretrained 'resnet18.nope' \(tags: a1_in1k, "):
        build_backbone(TimmBackboneSpec(name="resnet18", weights="nope"), pretrained=False, device="meta")
    with pytest.raises(SpecError, match=r"^backbone.name: timm model class EfficientNet has no layer-group layout "):
        build_backbone(TimmBackboneSpec(name="efficientnet_b0"), pretrained=False, device="meta")
