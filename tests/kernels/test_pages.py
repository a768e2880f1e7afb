"""Weights on a file mapping (``FileBuffer``): the values are the ones written, ``page_out`` takes clean pages out of
memory without changing a value, a page something wrote keeps what was written, and a flat optimizer on such a
buffer steps exactly as one on anonymous memory.

Residency is read from ``/proc/self/pagemap`` (as in test_flat_memory.py); elsewhere these tests skip.
"""

from __future__ import annotations

import mmap
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from ftengine.kernels import pages as pages_module
from ftengine.kernels.flat import FlatBucket
from ftengine.kernels.pages import FileBuffer
from ftengine.runtime.optimizer import FlatOptimizer
from test_flat_memory import resident_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.access("/proc/self/pagemap", os.R_OK),
                                reason="file mappings and page residency are Linux's here")

N = 4 << 20  # elements: 16 MiB of fp32


def _kernel_pages_out() -> bool:
    """Whether this kernel takes MADV_PAGEOUT (Linux 5.4+; some sandboxes refuse it)."""
    pages = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        pages.madvise(pages_module.MADV_PAGEOUT, 0, mmap.PAGESIZE)
    except OSError:
        return False
    finally:
        pages.close()
    return True


PAGES_OUT = _kernel_pages_out() if sys.platform.startswith("linux") else False
needs_pageout = pytest.mark.skipif(not PAGES_OUT, reason="this kernel does not take MADV_PAGEOUT (Linux 5.4+)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_buffer_holds_the_parts_at_their_offsets_and_zeros_elsewhere(tmp_path, dtype) -> None:
    a, b = torch.randn(1000).to(dtype), torch.randn(3, 7).to(dtype)
    buffer = FileBuffer.create([(0, a), (N - 21, b)], N, dtype, tmp_path)
    assert buffer is not None and buffer.tensor.dtype == dtype and buffer.tensor.shape == (N,)
    expected = torch.zeros(N, dtype=dtype)
    expected[:1000], expected[N - 21:] = a, b.reshape(-1)
    assert torch.equal(buffer.tensor, expected)
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing left in the folder


@needs_pageout
def test_page_out_takes_clean_pages_out_of_memory_and_they_come_back_unchanged(tmp_path) -> None:
    values = torch.randn(N)
    buffer = FileBuffer.create([(0, values)], N, torch.float32, tmp_path)
    t = buffer.tensor
    assert float(t.sum()) == pytest.approx(float(values.sum()), rel=1e-5)  # read: every page mapped in
    assert resident_bytes(t) > N * 4 // 2
    advised = buffer.page_out(0, N)
    assert advised == N * 4  # the buffer starts on a page: all of it
    assert resident_bytes(t) < N * 4 // 8  # the pages left (the kernel may keep a few it is still writing back)
    assert torch.equal(t, values)  # read back from the file


def test_page_out_never_loses_a_written_page(tmp_path) -> None:
    values = torch.randn(N)
    buffer = FileBuffer.create([(0, values)], N, torch.float32, tmp_path)
    t = buffer.tensor
    t[: N // 2].mul_(2)  # the process's own copies of these pages now (copy on write)
    buffer.page_out(0, N)
    assert torch.equal(t[: N // 2], values[: N // 2] * 2)  # kept (or swapped and read back), never dropped
    assert torch.equal(t[N // 2:], values[N // 2:])
    assert buffer.page_out(0, 1000) == 0  # less than a whole page: nothing to advise


def test_without_room_on_the_disk_it_declines_and_the_bucket_stays_anonymous(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pages_module.shutil, "disk_usage", lambda _: SimpleNamespace(free=N * 4))  # the size, not twice
    assert FileBuffer.create([(0, torch.ones(4))], N, torch.float32, tmp_path) is None  # needs twice its size
    p = torch.nn.Parameter(torch.randn(N))
    bucket = FlatBucket([[p]], ("exp_avg", "exp_avg_sq"), torch.float32, 5, weights_dir=tmp_path)
    assert bucket.backing is None and bucket.page_out([0]) == 0 and torch.equal(p.detach(), bucket.param[:N])


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 8))


def _train(weights_dir, page_out_at: int | None) -> tuple[list[torch.Tensor], FlatOptimizer]:
    model = _model()
    frozen = list(model[0].parameters())
    for p in frozen:
        p.requires_grad_(False)
    groups = [dict(params=frozen, name="frozen", trainable=False),
              dict(params=list(model[1].parameters()), name="middle", lr=1e-3),
              dict(params=list(model[2].parameters()), name="top", lr=1e-2)]
    opt = FlatOptimizer(groups, kind="adamw", weight_decay=0.01, weights_dir=weights_dir)
    torch.manual_seed(1)
    for step in range(8):
        x = torch.randn(16, 1024)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        if step == page_out_at:
            advised = opt.page_out([0])
            assert advised > 0 if weights_dir is not None and PAGES_OUT else advised == 0
    return [p.detach().clone() for p in model.parameters()], opt


def test_an_optimizer_on_the_weights_file_steps_as_one_on_anonymous_memory(tmp_path) -> None:
    anonymous, _ = _train(None, page_out_at=3)
    mapped, opt = _train(tmp_path, page_out_at=3)
    assert opt.buckets[0].backing is not None  # 4.2 MB of fp32: on the file
    for a, b in zip(anonymous, mapped, strict=True):
        assert torch.equal(a, b)  # bit for bit, the paged-out frozen layer included
    start = _model()
    assert torch.equal(mapped[0], start[0].weight.detach()) and torch.equal(mapped[1], start[0].bias.detach())
