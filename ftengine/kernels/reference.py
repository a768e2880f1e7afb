"""Pure-PyTorch reference kernels: the executable specification of every ``ftengine`` op.

Each function here is registered as the op's default kernel (``CompositeExplicitAutograd``), so it runs on any
device when no native kernel is registered, and the native kernels are tested against it.
"""

from __future__ import annotations

import torch


def scale_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Placeholder op proving the dispatch chain: ``x + alpha * y``."""
    return x + alpha * y


# --- activation cache (ftengine/runtime/cache): ragged gather ----------------------------------------------------

def gather_ragged(data: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor,
                  max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble a right-padded batch from ragged rows (spec of ``ftengine::gather_ragged``).

    Example ``i`` owns rows ``offsets[i] : offsets[i] + lengths[i]`` of ``data`` (its real tokens only).

    Args:
        data: (R, D) rows of every example, back to back.
        offsets: (N,) int64 first row of each example.
        lengths: (N,) int64 real tokens of each example.
        index: (B,) int64 example ids of the batch.
        max_len: T, the padded length; longer examples are cut to T.
        dtype: element type of the output (the compute dtype).

    Returns:
        out (B, T, D) in ``dtype``: ``out[b, t] = data[offsets[index[b]] + t]`` for ``t < min(lengths[index[b]], T)``,
        zeros elsewhere; mask (B, T) int64, 1 at real tokens.
    """
    positions = torch.arange(max_len, device=data.device)
    starts = offsets.index_select(0, index)
    lens = lengths.index_select(0, index).clamp(max=max_len)
    mask = positions.unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
    rows = (starts.unsqueeze(1) + positions.unsqueeze(0))[mask]  # real tokens' source rows, row-major
    out = data.new_zeros((index.shape[0], max_len, data.shape[1]), dtype=dtype)
    out[mask] = data.index_select(0, rows).to(dtype)
    return out, mask.to(torch.int64)
