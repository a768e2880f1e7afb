"""`ftengine bench ddp --quick`: two gloo ranks on the CPU; the counted facts of its result (never a timing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ALIGN_BYTES = 64 * 4  # the flat buffer aligns each fp32 parameter to 64 elements (ftengine.kernels.flat.ALIGN)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> dict[str, Any]:
    """The quick suite run once through the CLI (tiny random BERT with MiniLM's tokenizer, 2 ranks)."""
    from ftengine.cli import main

    out = tmp_path_factory.mktemp("ddp") / "ddp.json"
    assert main(["bench", "ddp", "--quick", "--out", str(out)]) == 0
    assert out.with_suffix(".png").stat().st_size > 0
    return json.loads(out.read_text())


def test_records_the_world_and_stages(result: dict[str, Any]) -> None:
    assert result["world"]["size"] == 2 and result["world"]["backend"] == "gloo"
    assert result["world"]["intra_op_threads_per_rank"] == 1
    assert set(result["variants"]) == {"ftengine", "ddp-lr0", "ddp-rewrap"}
    assert [s["name"] for s in result["variants"]["ftengine"]["stages"]] == ["head", "top1", "top3"]


def test_ftengine_all_reduces_exactly_the_trainable_bytes(result: dict[str, Any]) -> None:
    stages = result["variants"]["ftengine"]["stages"]
    for stage in stages:
        assert stage["grad_bytes_per_step_all"] == [stage["expected_bytes"]], stage["name"]
        # independently of GradSync: the trainable parameters' bytes, each padded to the flat buffer's alignment
        low = stage["trainable_param_bytes"]
        assert low <= stage["expected_bytes"] < low + ALIGN_BYTES * stage["trainable_tensors"], stage["name"]
    assert stages[0]["expected_bytes"] < stages[1]["expected_bytes"] < stages[2]["expected_bytes"]


def test_ddp_rewrap_moves_the_trainable_parameters(result: dict[str, Any]) -> None:
    for ft, ddp in zip(result["variants"]["ftengine"]["stages"], result["variants"]["ddp-rewrap"]["stages"],
                       strict=True):
        assert ddp["grad_bytes_per_step"] == ddp["trainable_param_bytes"] == ft["trainable_param_bytes"]


def test_ddp_lr0_moves_every_parameter(result: dict[str, Any]) -> None:
    total = result["model"]["param_bytes"]
    assert total > result["variants"]["ftengine"]["stages"][-1]["expected_bytes"]
    for stage in result["variants"]["ddp-lr0"]["stages"]:
        assert stage["grad_bytes_per_step"] >= total


def test_replicas_stay_equal(result: dict[str, Any]) -> None:
    for name in ("ftengine", "ddp-lr0"):
        sums = result["variants"][name]["checksums"]
        assert len(sums) == 2 and sums[0] == sums[1], name
    assert result["targets"]["ftengine_bytes_per_step_eq_trainable"] is True


def test_bad_options_exit_2_with_one_line_each(cli) -> None:
    result = cli("bench", "ddp", "--batch-size", "7", "--variants", "ddp,ftengine")
    assert result.code == 2
    assert result.err.splitlines() == [
        "bench ddp: --variants: unknown ddp; choose from ftengine, ddp-lr0, ddp-rewrap",
        "bench ddp: --batch-size 7 does not split over --nproc 2 ranks; give a multiple of 2"]


def test_each_rank_fills_its_share_of_the_cache(result: dict[str, Any]) -> None:
    fill = result["fill"]
    counts = fill["examples_per_rank"]
    assert len(counts) == 2 and sum(counts) == fill["examples"] > 0  # every example once, over the node's ranks
    assert all(abs(c - fill["examples"] / 2) <= 32 for c in counts)  # every 2nd fill batch of 32 each
    assert fill["single_examples_computed"] == [fill["examples"], fill["examples"]]
