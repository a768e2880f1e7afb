"""ftengine::gather_ragged: reference vs a plain loop, native vs reference (CPU; CUDA marked gpu), opcheck."""

from __future__ import annotations

import pytest
import torch
from kernel_utils import requires_cuda

from ftengine import kernels
from ftengine.kernels import reference
from ftengine.kernels.ops import gather_ragged

# Gathering only copies and converts: every backend must match the reference bit for bit.
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def ragged(lengths: list[int], width: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths, dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)[:-1]]) if lengths else lens.clone()
    data = torch.randn(int(lens.sum()), width, generator=gen).to(dtype)
    return data, offsets, lens


def loop_gather(data, offsets, lengths, index, max_len, dtype):
    """Independent statement of the semantics, one example at a time."""
    out = torch.zeros(len(index), max_len, data.shape[1], dtype=dtype)
    mask = torch.zeros(len(index), max_len, dtype=torch.int64)
    for b, i in enumerate(index.tolist()):
        n = min(int(lengths[i]), max_len)
        out[b, :n] = data[int(offsets[i]):int(offsets[i]) + n].to(dtype)
        mask[b, :n] = 1
    return out, mask


CASES = [  # (lengths, width, index, max_len)
    ([5, 0, 9, 3, 33], 7, [4, 1, 2, 2, 0], 33),  # repeats, an empty example, the longest sets T
    ([1], 1, [0], 1),
    ([3, 4], 4097, [1, 0], 4),  # wide rows (odd size)
    ([2, 6, 4], 3, [], 0),  # empty batch
    ([7, 2], 5, [0, 1], 4),  # max_len below the longest: cut to T
    ([0, 0], 8, [1, 0], 0),  # nothing real
]


@pytest.mark.parametrize("lengths,width,index,max_len", CASES)
@pytest.mark.parametrize("src", DTYPES)
def test_reference_matches_loop(lengths, width, index, max_len, src):
    data, offsets, lens = ragged(lengths, width, src)
    idx = torch.tensor(index, dtype=torch.int64)
    for dst in DTYPES:
        out, mask = reference.gather_ragged(data, offsets, lens, idx, max_len, dst)
        want_out, want_mask = loop_gather(data, offsets, lens, idx, max_len, dst)
        assert out.dtype == dst and mask.dtype == torch.int64
        assert torch.equal(out, want_out) and torch.equal(mask, want_mask)


def _has_cpu_kernel() -> bool:
    # An extension built before this op existed loads fine but registers no kernel for it.
    return kernels.native_available("cpu") and torch._C._dispatch_has_kernel_for_dispatch_key(
        "ftengine::gather_ragged", "CPU")


needs_native = pytest.mark.skipif(not _has_cpu_kernel(), reason=f"no native gather_ragged CPU kernel "
                                  f"({kernels.backend_info()['reason'] or 'extension built without it: rebuild'})")


# Where the op dispatches to a compiled kernel: the C++ one (if this build has it) and the CUDA one.
NATIVE_DEVICES = [pytest.param("cpu", id="cpu", marks=[pytest.mark.native, needs_native]),
                  pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda])]


@pytest.mark.parametrize("device", NATIVE_DEVICES)
@pytest.mark.parametrize("lengths,width,index,max_len", CASES)
@pytest.mark.parametrize("src", [*DTYPES, torch.float64])
def test_native_matches_reference(device, lengths, width, index, max_len, src):
    data, offsets, lens = ragged(lengths, width, src)
    idx = torch.tensor(index, dtype=torch.int64)
    for dst in DTYPES:
        got = gather_ragged(data.to(device), offsets.to(device), lens.to(device), idx.to(device), max_len, dst)
        want = reference.gather_ragged(data, offsets, lens, idx, max_len, dst)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


@pytest.mark.native
@needs_native
def test_native_cpu_reads_strided_rows_and_large_batches():
    # Rows with a stride (a column slice of a wider buffer) and enough rows to split across threads.
    lengths = [int(n) for n in torch.randint(0, 70, (300,), generator=torch.Generator().manual_seed(1))]
    data, offsets, lens = ragged(lengths, 96, torch.bfloat16)
    wide = torch.cat([data, torch.ones_like(data)], dim=1)[:, :96]
    idx = torch.randint(0, 300, (128,), generator=torch.Generator().manual_seed(2))
    got = gather_ragged(wide, offsets, lens, idx, 69, torch.float32)
    want = reference.gather_ragged(data, offsets, lens, idx, 69, torch.float32)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.native
@needs_native
def test_native_cpu_rejects_bad_index_with_the_op_name():
    data, offsets, lens = ragged([2, 3], 4)
    with pytest.raises(RuntimeError, match=r"ftengine::gather_ragged: index\[1\] = 2 is out of range for 2 examples"):
        gather_ragged(data, offsets, lens, torch.tensor([0, 2]), 3, torch.float32)
    with pytest.raises(RuntimeError, match="ftengine::gather_ragged: offsets must be int64"):
        gather_ragged(data, offsets.int(), lens, torch.tensor([0]), 3, torch.float32)


@pytest.mark.parametrize("src,dst", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32)])
def test_opcheck(src, dst):
    data, offsets, lens = ragged([5, 0, 9, 3], 6, src)
    idx = torch.tensor([3, 1, 0])
    torch.library.opcheck(torch.ops.ftengine.gather_ragged.default, (data, offsets, lens, idx, 9, dst))


@pytest.mark.gpu
@requires_cuda
def test_cuda_opcheck():
    data, offsets, lens = ragged([5, 0, 9, 3], 6, torch.bfloat16)
    args = (data.cuda(), offsets.cuda(), lens.cuda(), torch.tensor([3, 1, 0]).cuda(), 9, torch.float32)
    torch.library.opcheck(torch.ops.ftengine.gather_ragged.default, args)
