"""WiSE-FT mixing: a=0 gives the pretrained weights, a=1 the fine-tuned ones; LoRA updates scale by a; a backbone with
adapters gives the same logits from the cached boundary as from the inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftengine.runtime.wise_ft import mix

pytest.importorskip("peft")


def test_mix_ends_and_lora_scaling() -> None:
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.zeros(3))
    model.register_module("q", torch.nn.Module())
    model.q.register_parameter("lora_B", torch.nn.Parameter(torch.zeros(2)))
    pre = {"w": torch.tensor([1.0, 2.0, 3.0]), "q.lora_B": torch.zeros(2)}
    fine = {"w": torch.tensor([3.0, 2.0, 1.0]), "q.lora_B": torch.tensor([4.0, -4.0])}
    mix(model, pre, fine, 0.0)
    assert torch.equal(model.w, pre["w"]) and torch.equal(model.q.lora_B, pre["q.lora_B"])
    mix(model, pre, fine, 1.0)
    assert torch.equal(model.w, fine["w"]) and torch.equal(model.q.lora_B, fine["q.lora_B"])
    mix(model, pre, fine, 0.25)
    torch.testing.assert_close(model.w.detach(), torch.tensor([1.5, 2.0, 2.5]))
    torch.testing.assert_close(model.q.lora_B.detach(), torch.tensor([1.0, -1.0]))


def test_forward_from_cached_boundary_with_adapters(tiny_bert: Path) -> None:
    from ftengine.backbones.hf import load_hf_backbone
    from ftengine.runtime.adapters import attach_adapters
    from ftengine.spec.adapters import LoraSpec

    backbone = load_hf_backbone(str(tiny_bert)).eval()
    attach_adapters(backbone, LoraSpec(targets=["encoder.layer.1"], modules=["query", "value"], r=2))
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a non-zero update, so the adapter changes the output
    assert [g.name for g in backbone.groups][:3] == ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    batch = {"input_ids": torch.tensor([[101, 2204, 2154, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        whole = backbone.forward_from(0, batch)["hidden"]
        cached = backbone.forward_from(0, batch, stop=2)  # the frozen prefix below the adapted group
        torch.testing.assert_close(backbone.forward_from(2, cached)["hidden"], whole)
