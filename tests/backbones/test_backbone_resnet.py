"""torchvision ResNet backbones.

No ResNet weights are available offline here, so every model in these tests is randomly initialised
(seeded); named weights are exercised through a pre-filled torch.hub cache folder holding a random
state dict, and the download failure through a patched downloader. The reference is torchvision's own
module forward, captured at the avgpool input.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from ftengine.backbones import build_backbone
from ftengine.errors import RunError, SpecError
from ftengine.spec import TorchvisionBackboneSpec

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _build(arch: str = "resnet18", weights: str | None = None, **kwargs):
    return build_backbone(TorchvisionBackboneSpec(arch=arch, weights=weights), **kwargs)


def _random_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None).state_dict()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(_random_state("resnet18"), path)  # includes fc.* keys: the loader must ignore them
    return path


def test_groups_names_and_counts(resnet18_file):
    backbone = _build(weights=str(resnet18_file))
    reference = torchvision.models.resnet18()
    assert backbone.group_names == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert (backbone.modality, backbone.family, backbone.feature_dim) == ("image", "cnn", 512)
    fc = sum(p.numel() for p in reference.fc.parameters())
    assert backbone.num_params() == sum(p.numel() for p in reference.parameters()) - fc
    assert not any(n.startswith("fc.") for n, _ in backbone.named_parameters())
    assert isinstance(backbone.model.fc, torch.nn.Identity)
    assert backbone.groups[0].param_names == ("conv1.weight", "bn1.weight", "bn1.bias")
    assert all(g.has_batchnorm and not g.has_dropout for g in backbone.groups)


def test_file_weights_load(resnet18_file):
    backbone = _build(weights=str(resnet18_file))
    saved = torch.load(resnet18_file)
    assert torch.equal(backbone.get_parameter("layer3.1.conv2.weight"), saved["layer3.1.conv2.weight"])
    assert torch.equal(backbone.get_buffer("bn1.running_var"), saved["bn1.running_var"])
    assert backbone.info["load_report"]["ignored"] == ["fc.weight", "fc.bias"]


@torch.no_grad()
def test_forward_from_every_boundary_matches_torchvision(resnet18_file):
    backbone = _build(weights=str(resnet18_file)).eval()
    reference = torchvision.models.resnet18()
    reference.load_state_dict(torch.load(resnet18_file))
    reference.eval()
    seen: dict[str, torch.Tensor] = {}
    modules = {"layer1": reference.layer1, "layer2": reference.layer2, "layer3": reference.layer3,
               "layer4": reference.layer4, "avgpool": reference.avgpool}
    for name, module in modules.items():
        module.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0]))
    pixels = torch.randn(2, 3, 64, 64)
    reference(pixels)
    expected = seen["avgpool"]
    torch.testing.assert_close(backbone({"pixels": pixels})["features"], expected, **TOL)
    for k in range(1, 5):
        out = backbone.forward_from(k, {"features": seen[f"layer{k}"]})
        torch.testing.assert_close(out["features"], expected, **TOL)
    assert [backbone.boundary_shape(k, 64) for k in range(6)] == \
        [(3, 64, 64)] + [tuple(seen[f"layer{k}"].shape[1:]) for k in range(1, 5)] + [tuple(expected.shape[1:])]


def test_meta_build_reads_nothing(resnet18_file, monkeypatch):
    def no_read(*args, **kwargs):
        raise AssertionError("a structure-only build must not read weights")

    monkeypatch.setattr(torch, "load", no_read)
    meta = _build("resnet50", weights=str(resnet18_file), pretrained=False, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert meta.feature_dim == 2048
    with torch.device("meta"):
        reference = torchvision.models.resnet50()
    assert meta.num_params() == sum(p.numel() for p in reference.parameters()) - (2048 * 1000 + 1000)
    assert meta.boundary_shape(5) == (2048, 7, 7)


def test_named_weights_preprocessing_without_loading():
    meta = _build("resnet50", weights="IMAGENET1K_V2", pretrained=False, device="meta")
    transform = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert meta.preprocessing == {"image_size": 224, "mean": list(transform.mean), "std": list(transform.std)}
    assert _build().preprocessing == {"image_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_named_weights_load_from_torch_hub_cache(tmp_path, monkeypatch):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = _random_state("resnet18", seed=3)
    torch.save(state, tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[1])
    backbone = _build(weights="DEFAULT")
    assert torch.equal(backbone.get_parameter("layer2.0.conv1.weight"), state["layer2.0.conv1.weight"])


def test_named_weights_offline_is_a_clear_run_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RunError) as err:
        _build(weights="IMAGENET1K_V1")
    (line,) = err.value.problems
    assert line.startswith("backbone.weights: cannot fetch torchvision weights 'ResNet18_Weights.IMAGENET1K_V1'")
    assert "set backbone.weights to a local state-dict file, or null" in line


def test_unknown_weight_name_and_arch_and_file():
    with pytest.raises(SpecError, match=r"^backbone.weights: resnet34 has no torchvision weights 'IMAGENET1K_V2' "
                                        r"\(choose from IMAGENET1K_V1, DEFAULT\)"):
        _build("resnet34", weights="IMAGENET1K_V2", pretrained=False, device="meta")
    with pytest.raises(SpecError, match=r"^backbone.arch: unsupported torchvision architecture 'vgg16' "
                                        r"\(supported: resnet18, resnet34, resnet50, "):
        _build("vgg16")
    with pytest.raises(SpecError, match=r"^backbone.weights: no such file '.*missing.pth' \(got 'missing.pth'\)"):
        _build(weights="missing.pth")


def test_wrong_file_is_reported(tmp_path):
    torch.save(_random_state("resnet34"), tmp_path / "r34.pth")
    with pytest.raises(SpecError) as err:
        _build(weights=str(tmp_path / "r34.pth"))
    message = str(err.value)
    assert message.startswith("backbone.weights: checkpoint does not match the model exactly (missing: none; "
                              "unexpected: layer1.2.conv1.weight, ")
    assert message.endswith("(+91 more)); use a state dict saved from torchvision's resnet18")
