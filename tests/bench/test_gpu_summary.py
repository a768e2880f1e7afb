"""The GPU check's Python pieces: the summary's targets and counts, random-init model folders, the model shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ftengine.bench.gpu_summary import collect, optimizer_targets, pytest_counts, read_steps
from ftengine.bench.optimizer import model_shapes, split_groups, summarize


def _row(model: str, groups: int, frozen: float, impl: str, **figures: float) -> dict:
    return dict(case=f"{model}/g{groups}/fp32/frozen{int(frozen * 100)}", model=model, groups=groups,
                precision="fp32", frozen=frozen, impl=impl, **figures)


def test_optimizer_targets_judge_each_case() -> None:
    rows = [_row("bert-base", 14, 0.0, "ftengine", ratio_to_copy=0.9, speedup_vs_torch_fused=1.1, ms_median=10.0,
                 trainable_params=100),
            _row("llama-1b", 26, 0.0, "ftengine", ratio_to_copy=0.8, speedup_vs_torch_fused=1.0, ms_median=50.0,
                 trainable_params=1000),
            _row("minilm-l6", 26, 0.0, "ftengine", ratio_to_copy=0.3, speedup_vs_torch_fused=2.5, ms_median=1.0,
                 trainable_params=10),
            _row("minilm-l6", 26, 0.5, "ftengine", ratio_to_copy=0.3, speedup_vs_torch_fused=2.0, ms_median=0.5,
                 trainable_params=5),
            _row("minilm-l6", 26, 0.0, "torch-fused", ratio_to_copy=0.1, speedup_vs_torch_fused=1.0, ms_median=2.5,
                 trainable_params=10)]
    targets = optimizer_targets({"results": rows, "summary": summarize(rows)})
    copy = targets["optimizer_copy_bandwidth_ge_0.85"]
    assert not copy["met"] and (copy["min"], copy["max"]) == (0.8, 0.9)  # the 1B case misses, MiniLM not judged
    assert targets["optimizer_minilm_26_groups_ge_2.0x_torch_fused"]["met"]
    frozen = targets["optimizer_50pct_frozen_time_le_0.55"]
    assert frozen["met"] and frozen["max"] == 0.5


def test_steps_counts_and_missing_results(tmp_path: Path) -> None:
    (tmp_path / "steps.tsv").write_text("build\t0\t61.5\t120\t\ne2e\t124\t75.0\t75\t\n")
    steps = read_steps(tmp_path)
    assert [(s["step"], s["rc"], s["timed_out"]) for s in steps] == [("build", 0, False), ("e2e", 124, True)]
    junit = tmp_path / "pytest.xml"
    junit.write_text('<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
                     '<testcase classname="t" name="a"/><testcase classname="t" name="b"><failure/></testcase>'
                     '<testcase classname="t" name="c"><skipped/></testcase><testcase classname="t" name="d"/>'
                     "</testsuite></testsuites>")
    assert pytest_counts(junit) == dict(tests=4, failures=1, errors=0, skipped=1, passed=2, failing=["t::b"])
    out = tmp_path / "out"
    summary = collect(tmp_path, out, device="cpu")  # no result files: the summary says what is missing
    assert summary["failed_steps"] == ["e2e"] and summary["targets"] == {} and summary["tests"] is None
    assert json.loads((out / "summary.json").read_text())["steps"][1]["timed_out"]


@pytest.mark.parametrize("model,tensors,numel,natural", [
    ("minilm-l6", 103, 22_713_216, 8),  # all-MiniLM-L6-v2 (22.7M parameters, the bundled model's count)
    ("bert-base", 199, 109_482_240, 14),  # bert-base-uncased with pooler
    ("llama-1b", 201, 1_100_048_384, 25),  # TinyLlama-1.1B: embeddings, 22 layers, final norm, LM head
])
def test_model_shapes_are_the_published_architectures(model: str, tensors: int, numel: int, natural: int) -> None:
    shapes = model_shapes(model)
    assert len(shapes) == tensors and sum(torch.Size(s).numel() for _, s in shapes) == numel
    assert len(split_groups(model, shapes, natural)) == natural
    assert all(len(split_groups(model, shapes, g)) == g for g in (1, 14, 26, 100))


def test_random_init_dir_has_the_shapes_and_fresh_weights(tmp_path: Path, minilm_dir: Path) -> None:
    from transformers import AutoModel

    from ftengine.bench.random_init import SHAPE_FILES, copy_shape_files, random_model_dir

    shapes = copy_shape_files(str(minilm_dir), tmp_path / "shapes")
    assert sorted(p.name for p in shapes) == sorted(SHAPE_FILES)  # config and tokenizer, no weights
    first = AutoModel.from_pretrained(str(random_model_dir(str(tmp_path / "shapes"), tmp_path / "a", seed=0)))
    again = AutoModel.from_pretrained(str(random_model_dir(str(tmp_path / "shapes"), tmp_path / "b", seed=0)))
    pretrained = AutoModel.from_pretrained(str(minilm_dir))
    w = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(first.state_dict()[w], again.state_dict()[w])  # one seed, one initialisation
    assert not torch.allclose(first.state_dict()[w], pretrained.state_dict()[w])
    assert sum(p.numel() for p in first.parameters()) == sum(p.numel() for p in pretrained.parameters())
