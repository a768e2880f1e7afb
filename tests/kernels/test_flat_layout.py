"""The flat buffer's layout and the bytes-per-parameter table the optimizer bench's GB/s figures use."""

from __future__ import annotations

import torch

from ftengine.kernels.flat import FlatLayout, bytes_per_param


def test_bytes_per_param_matches_the_documented_table() -> None:
    f32, bf16 = torch.float32, torch.bfloat16
    assert bytes_per_param("adamw", f32, f32, grad_norm=False) == 28
    assert bytes_per_param("adamw", f32, bf16, grad_norm=False) == 20
    assert bytes_per_param("adamw", f32, f32, grad_norm=False, anchor_dtype=f32) == 32  # L2-SP: + 4 B anchor
    assert bytes_per_param("adamw", f32, f32, grad_norm=False, anchor_dtype=bf16) == 30
    assert bytes_per_param("adamw", bf16, f32, grad_norm=False) == 28
    assert bytes_per_param("adamw", bf16, bf16, grad_norm=True) == 22
    assert bytes_per_param("sgd", f32, f32, grad_norm=False) == 20
    assert bytes_per_param("sgd", f32, f32, grad_norm=False, momentum=False) == 12


def test_layout_aligns_every_parameter() -> None:
    layout = FlatLayout.build([[1, 4097], [], [64]])
    assert layout.param_offsets == ((0, 64), (), (4224,))
    assert layout.segments == ((0, 4224), (4224, 0), (4224, 64)) and layout.numel == 4288
    assert layout.rows == ((0, 64, 0), (64, 4160, 0), (4224, 64, 2))  # one table row per parameter, gap included
