"""cache.fill_precision: the frozen prefix computed under bf16 autocast (fill and live prefix alike), chosen per
device, kept apart from fp32 entries in the cache, and absent from plans that ask for fp32 (the default is auto:
bf16 only where native)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pytest
import torch
from toy import ToyHead, toy_backbone

from ftengine.runtime import device as device_module
from ftengine.runtime.cache.keys import CacheKey
from ftengine.runtime.device import fill_dtype, native_bf16
from ftengine.runtime.model import FineTuneModel

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, native", [({"avx2"}, False), ({"avx2", "avx512_bf16"}, True), ({"amx_bf16"}, True)])
def test_bf16_is_native_only_with_avx512_bf16_or_amx(monkeypatch, flags: set[str], native: bool) -> None:
    monkeypatch.setattr(device_module, "cpu_flags", lambda: flags)
    assert native_bf16(CPU)[0] is native
    assert fill_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert fill_dtype("bf16", CPU) == torch.bfloat16 and fill_dtype("fp32", CPU) is None


def test_fp32_fill_keeps_the_entry_ids_of_earlier_versions() -> None:
    key = CacheKey(prefix="p", boundary=2, data="d", split="train", dtype="fp32")
    fields = {k: v for k, v in asdict(key).items() if k != "fill"}  # the key as it was before `fill` existed
    assert key.digest == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    bf16 = CacheKey(prefix="p", boundary=2, data="d", split="train", dtype="fp32", fill="bf16")
    assert bf16.entry_id != key.entry_id and bf16.to_dict()["fill"] == "bf16"


@torch.no_grad()
def test_a_bf16_prefix_hands_fp32_activations_to_the_trainable_layers() -> None:
    torch.manual_seed(0)
    model = FineTuneModel(toy_backbone(), ToyHead(3, dropout=0.0)).eval()
    x = {"pixels": torch.randn(5, 8)}
    exact = model.forward_from(0, x, frozen_prefix=2)
    low = model.forward_from(0, x, frozen_prefix=2, prefix_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert not torch.equal(low, exact)  # the prefix really ran in bf16 ...
    torch.testing.assert_close(low, exact, atol=5e-2, rtol=5e-2)  # ... to bf16's precision (8 mantissa bits)


def test_bf16_fill_run_caches_apart_and_is_planned(toy_run, tmp_path) -> None:
    plain = toy_run("fp32", cache={"enabled": "auto", "fill_precision": "fp32"})
    bf16 = toy_run("bf16", cache={"enabled": "auto", "fill_precision": "bf16"})
    plan = json.loads((bf16.run_dir / "plan.json").read_text())
    assert plan["cache"]["fill_precision"] == "bf16"
    assert "fill_precision" not in json.loads((plain.run_dir / "plan.json").read_text())["cache"]  # as before it was
    # a setting, so a run planned then still resumes (its spec.resolved.yaml says fp32)
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "activations").glob("*/manifest.json")]
    fills = sorted({m["key"].get("fill", "fp32") for m in manifests})
    assert fills == ["bf16", "fp32"]  # the bf16 run filled its own entries instead of reusing the fp32 ones
    for key in ("val_loss", "val_accuracy"):
        assert abs(plain.metrics[key] - bf16.metrics[key]) < 0.1
