"""The flat buffer's layout and the bytes-per-parameter table the optimizer bench's GB/s figures use."""

from __future__ import annotations

import torch

from ftengine.kernels.flat import FlatLayout, bytes_per_param, exact_view


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


def test_exact_view_saves_its_own_bytes_without_a_copy(tmp_path) -> None:
    flat = torch.arange(1_000_000, dtype=torch.float32)
    view = flat[1000:3000].view(20, 100)
    exact = exact_view(view)
    assert exact.data_ptr() == view.data_ptr() and exact.shape == view.shape and torch.equal(exact, view)
    torch.save({"w": exact}, tmp_path / "exact.pt")
    torch.save({"w": view}, tmp_path / "view.pt")
    assert (tmp_path / "exact.pt").stat().st_size < 8000 + 2000  # 2,000 fp32 values and the zip records
    assert (tmp_path / "view.pt").stat().st_size > 4_000_000  # a plain view writes the whole buffer
    assert torch.equal(torch.load(tmp_path / "exact.pt", weights_only=True)["w"], view)
    flat[1000] = -1.0
    assert exact[0, 0] == -1.0  # shared memory: write it out before the source changes


def test_exact_view_copies_what_it_cannot_slice() -> None:
    flat = torch.arange(12, dtype=torch.float32)
    whole = exact_view(flat)
    assert whole.data_ptr() == flat.data_ptr()  # already exactly its storage
    strided = flat.view(3, 4)[:, 1]
    copy = exact_view(strided)
    assert torch.equal(copy, strided) and copy.is_contiguous() and copy.data_ptr() != flat.data_ptr()
