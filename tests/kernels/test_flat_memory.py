"""Memory of the flat buffers on the CPU: a group that never trains never makes its gradient, moment or anchor
pages resident, and the buffers still read as zeros everywhere nobody wrote.

Residency is read from ``/proc/self/pagemap`` (bit 63 of each page's entry: present), which Linux lets a process
read for its own pages; elsewhere these tests skip.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest
import torch

from ftengine.kernels.flat import LAZY_BYTES, untouched_zeros
from ftengine.runtime.optimizer import FlatOptimizer

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
HUGE = 2 << 20  # a transparent huge page at a written boundary may make up to 2 MiB around it resident
FROZEN = 8 << 20  # elements of the frozen group: 32 MiB of fp32, far more than the slack above

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.access("/proc/self/pagemap", os.R_OK),
                                reason="page residency is read from Linux's /proc/self/pagemap")


def resident_bytes(t: torch.Tensor) -> int:
    """Bytes of the pages under ``t`` (contiguous) that are present in memory, whole pages counted."""
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    first, last = start // PAGE, (end - 1) // PAGE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        raw = f.read((last - first + 1) * 8)
    return sum((v >> 63) & 1 for v in struct.unpack(f"{len(raw) // 8}Q", raw)) * PAGE


def interior(t: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """The part of ``t[start:start + length]`` more than a huge page away from either end."""
    slack = HUGE // t.element_size()
    return t[start + slack:start + length - slack]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_untouched_zeros_are_zero_aligned_and_not_resident(dtype: torch.dtype) -> None:
    t = untouched_zeros(FROZEN, dtype, torch.device("cpu"))
    assert t.dtype == dtype and t.shape == (FROZEN,) and t.is_contiguous()
    assert t.data_ptr() % 64 == 0  # as torch's own CPU allocator aligns
    assert resident_bytes(t) <= 2 * HUGE  # allocating did not touch the buffer (torch.zeros would: all of it)
    t[:1000].add_(1)
    t[-1000:].add_(2)
    assert float(t[:1000].sum()) == 1000 and float(t[-1000:].sum()) == 2000
    assert resident_bytes(interior(t, 0, FROZEN)) == 0  # writing the ends left the middle untouched
    assert not bool(t[1000:-1000].any())  # and it reads as zeros


def test_the_check_sees_written_pages() -> None:
    t = untouched_zeros(FROZEN, torch.float32, torch.device("cpu"))
    t[::PAGE // 4].fill_(1.0)  # one element per page
    assert resident_bytes(t) >= FROZEN * 4


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("frozen_numel", [FROZEN, FROZEN // 2])
def test_a_group_that_never_trains_never_makes_its_grad_moments_or_anchor_resident(backend: str,
                                                                                   frozen_numel: int) -> None:
    torch.manual_seed(0)
    # Free resident memory first: glibc raises its mmap threshold to the size of a freed mapping (up to 32 MiB) and
    # then serves buffers under it from the heap, where this freed, resident block is waiting to be reused.
    scratch = torch.ones(FROZEN * 4 // 3)
    del scratch
    frozen = torch.nn.Parameter(torch.randn(frozen_numel), requires_grad=False)
    head = torch.nn.Linear(64, 3)
    opt = FlatOptimizer([dict(params=[frozen], name="encoder", lr=1e-3, trainable=False),
                         dict(params=list(head.parameters()), name="head", lr=1e-3, trainable=True)],
                        max_grad_norm=1.0, anchor_dtype="fp32", backend=backend)
    (bucket,) = opt.buckets
    offset, length = bucket.layout.segments[0]
    x = torch.randn(16, 64)
    for _ in range(3):  # backward, clipped step and zero_grad, as a training loop does
        torch.nn.functional.cross_entropy(head(x + frozen[:64]), torch.arange(16) % 3).backward()
        opt.step()
        opt.zero_grad()
    assert bucket.steps.tolist() == [0, 3, 3]  # the frozen row never stepped, the head's two did
    for name, buf in [("grad", bucket.grad), *bucket.state.items(), ("anchor", bucket.anchor)]:
        assert resident_bytes(interior(buf, offset, length)) == 0, name
    assert not bool(bucket.grad[offset:offset + length].any())  # what a reader of the frozen grads would see
    assert torch.equal(frozen.detach()[:5], bucket.param[offset:offset + 5])  # the weights moved in intact
