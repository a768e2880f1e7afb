"""The optimizer workbench's case construction, validation and summary."""

from __future__ import annotations

import pytest
import torch

from ftengine.bench.optimizer import Case, frozen_mask, model_shapes, split_groups, summarize, validate


@pytest.mark.parametrize("groups", [1, 6, 26, 100])
def test_resnet50_splits_into_the_asked_number_of_groups(groups: int) -> None:
    shapes = model_shapes("resnet50")
    split = split_groups("resnet50", shapes, groups)
    assert len(split) == groups and all(split)
    assert sum(len(g) for g in split) == len(shapes) == 161  # torchvision's ResNet-50 has 161 parameter tensors
    assert sum(torch.Size(s).numel() for g in split for s in g) == 25_557_032


def test_frozen_mask_freezes_input_side_groups_up_to_the_fraction() -> None:
    assert frozen_mask([[(10,)], [(30,)], [(60,)]], 0.5) == [False, False, True]
    assert frozen_mask([[(10,)], [(30,)]], 0.0) == [True, True]


@pytest.mark.parametrize("impl", ["ftengine", "ftengine-bf16m", "torch-fused"])
def test_validation_runs_against_the_reference(impl: str) -> None:
    assert validate(Case("resnet50", 6, "fp32", 0.5), impl, "cpu") == "ok"


def test_summary_reports_speedups_and_frozen_scaling() -> None:
    row = dict(model="m", groups=2, precision="fp32", impl="ftengine", case="c", speedup_vs_torch_fused=1.5)
    rows = [dict(row, frozen=0.0, ms_median=10.0, trainable_params=100),
            dict(row, frozen=0.5, ms_median=5.5, trainable_params=50)]
    summary = summarize(rows)
    assert summary["frozen_scaling"] == [dict(case="c", impl="ftengine", time_ratio=0.55, trainable_share=0.5)]
    assert len(summary["vs_torch_fused"]) == 2


def test_cli_options_name_the_workbench_implementations() -> None:
    from ftengine.bench.optimizer import IMPLS
    from ftengine.cli import build_parser

    CLI_IMPLS = build_parser().parse_args(["bench", "optimizer"]).impls  # the --impls default
    assert CLI_IMPLS.split(",") == list(IMPLS)
