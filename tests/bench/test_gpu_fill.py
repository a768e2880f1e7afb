"""The GPU check's fill step: weights packed in fp16 for the trip and unpacked in fp32, and the fp32/bf16 summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ftengine.bench.gpu_fill import PACKED, pack_weights, summarize, unpack_model


def _model_dir(root: Path, tensors: dict[str, torch.Tensor]) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    save_file(tensors, str(root / "model.safetensors"))
    return root


def test_packed_weights_come_back_in_fp32_rounded_once_to_fp16(tmp_path: Path) -> None:
    weights = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.arange(7, dtype=torch.int64)
    src = _model_dir(tmp_path / "src", {"encoder.weight": weights, "position_ids": ids})
    packed = pack_weights(str(src), tmp_path / "packed")
    assert packed.name == PACKED and load_file(str(packed))["encoder.weight"].dtype == torch.float16
    assert packed.stat().st_size < (src / "model.safetensors").stat().st_size * 0.6  # half the float bytes

    out = unpack_model(src, packed, tmp_path / "model")
    assert (out / "config.json").read_text() == (src / "config.json").read_text()
    assert (out / "vocab.txt").is_file()
    back = load_file(str(out / "model.safetensors"))
    assert back["encoder.weight"].dtype == torch.float32
    assert torch.equal(back["encoder.weight"], weights.half().float())  # exactly the fp16 rounding, nothing more
    assert torch.equal(back["position_ids"], ids)  # integer tensors travel as they are


def test_a_weight_beyond_fp16_range_is_refused_by_name(tmp_path: Path) -> None:
    src = _model_dir(tmp_path / "src", {"big.weight": torch.tensor([1.0, 1e6])})
    with pytest.raises(ValueError, match=r"^pack_weights: big.weight does not fit in fp16 \(max \|value\| 1e\+06\)"):
        pack_weights(str(src), tmp_path / "packed")


def test_unpack_needs_the_config_beside_the_weights(tmp_path: Path) -> None:
    src = _model_dir(tmp_path / "src", {"w": torch.ones(2)})
    packed = pack_weights(str(src), tmp_path / "packed")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        unpack_model(tmp_path / "empty", packed, tmp_path / "model")


def _run(seed: int, precision: str, fill: float, accuracy: float) -> dict:
    return dict(seed=seed, fill_precision=precision, fill_seconds=fill, best_val_accuracy=accuracy)


def test_summary_compares_bf16_with_fp32_per_seed_and_on_the_mean() -> None:
    runs = [_run(0, "fp32", 2.0, 0.780), _run(0, "bf16", 1.0, 0.778), _run(1, "bf16", 1.2, 0.770),
            _run(1, "fp32", 2.4, 0.770), _run(2, "fp32", 3.0, 0.790), _run(2, "bf16", 1.5, 0.785)]
    s = summarize(runs)
    assert s["fp32"]["fill_seconds_median"] == 2.4 and s["bf16"]["fill_seconds_median"] == 1.2
    assert s["fp32"]["seeds"] == [0, 1, 2] and s["bf16"]["seeds"] == [0, 1, 2]
    gap = s["bf16_vs_fp32"]
    assert gap["fill_speedup"] == pytest.approx(2.0)
    assert gap["accuracy_gap_per_seed"] == pytest.approx([-0.002, 0.0, -0.005])
    assert gap["accuracy_gap_mean"] == pytest.approx(-0.007 / 3)
    assert gap["accuracy_within_tolerance"]  # |-0.23 points| <= 0.3
    worse = summarize([_run(0, "fp32", 1.0, 0.78), _run(0, "bf16", 1.0, 0.77)])
    assert not worse["bf16_vs_fp32"]["accuracy_within_tolerance"]  # 1 point
    assert "bf16_vs_fp32" not in summarize([_run(0, "fp32", 1.0, 0.78)])  # nothing to compare with
