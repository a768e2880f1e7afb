"""Gather-kernel workbench for the cache suite: build inputs, run the reference, run each backend, validate, then
time one batch assembly, next to a plain copy of the same number of bytes (the bandwidth it could reach)."""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

import torch

from ftengine.bench.kit import sync
from ftengine.kernels import native_available, reference
from ftengine.kernels.ops import gather_ragged


def _time(fn: Any, device: torch.device, repeats: int = 30) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _pad_sequence(data: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # What one would write without the op: slice, pad, build the mask, convert (several passes).
    rows = [data[int(offsets[i]):int(offsets[i]) + int(lengths[i])] for i in index.tolist()]
    out = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(dtype)
    lens = lengths[index]
    mask = (torch.arange(out.shape[1], device=out.device)[None, :] < lens[:, None]).long()
    return out, mask


def gather_bench(device: str, batch: int, max_len: int, examples: int = 2048, width: int = 384) -> dict[str, Any]:
    """Time one batch assembly per backend for fp32 and bf16 storage (fp32 output); every output validated."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, max_len + 1, (examples,), generator=gen)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    base = torch.randn(int(lengths.sum()), width, generator=gen)
    index = torch.randperm(examples, generator=gen)[:batch]
    native = native_available(dev)
    out: dict[str, Any] = dict(batch=batch, width=width, examples=examples, native_kernel=native)
    for store in ("fp32", "bf16"):
        data = base.to({"fp32": torch.float32, "bf16": torch.bfloat16}[store]).to(dev)
        off, lens, idx = offsets.to(dev), lengths.to(dev), index.to(dev)
        t = int(lengths[index].max())
        want = reference.gather_ragged(data, off, lens, idx, t, torch.float32)
        args = (data, off, lens, idx)
        backends = {"reference": partial(reference.gather_ragged, *args, t, torch.float32),
                    "pad_sequence": partial(_pad_sequence, *args, torch.float32)}
        if native:
            backends["native"] = partial(gather_ragged, *args, t, torch.float32)
        # bytes moved: the batch's real rows read, the padded (B, T, width) fp32 output and int64 mask written
        nbytes = int(lengths[index].sum()) * width * data.element_size() + batch * t * (width * 4 + 8)
        src = torch.ones(max(nbytes // 2, 1), dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        copy_s = _time(lambda: dst.copy_(src), dev)
        row: dict[str, Any] = dict(bytes=nbytes, copy_us=round(copy_s * 1e6, 1),
                                   copy_gbps=round(2 * src.numel() / copy_s / 1e9, 2))
        for name, fn in backends.items():
            got = fn()
            if not (torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])):
                raise AssertionError(f"gather bench: {name} output differs from the reference ({store})")
            seconds = _time(fn, dev)
            row[f"{name}_us"] = round(seconds * 1e6, 1)
            row[f"{name}_gbps"] = round(nbytes / seconds / 1e9, 2)
            row[f"{name}_ratio_to_copy"] = round(nbytes * copy_s / (seconds * 2 * src.numel()), 3)
        out[store] = row
    return out
