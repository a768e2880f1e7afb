"""Batch assembly from cached rows: the typed wrapper over ``ftengine::gather_ragged`` and the host->device copy.

On a GPU run whose cache lives in host memory (pinned) or on disk, a batch is gathered on the CPU and copied
to the device on a side stream: the copy of batch ``k+1`` runs while the device still executes the queued
forward/backward of batch ``k`` (the host issues work ahead of the device), and the compute stream waits on
the copy with an event, never with a host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ftengine.kernels import _native  # noqa: F401  (defines the op schemas, loads the native kernels)


def gather_ragged(data: Tensor, offsets: Tensor, lengths: Tensor, index: Tensor, max_len: int,
                  dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Padded batch ``(B, max_len, D)`` in ``dtype`` and its int64 mask ``(B, max_len)`` from ragged rows.

    Dispatches to the native CPU/CUDA kernel when the extension is loaded, else to the PyTorch reference
    (``ftengine.kernels.reference.gather_ragged``, which also defines the semantics). Every tensor must be on
    ``data``'s device; ``data`` must be 2-D with unit-stride rows.
    """
    return torch.ops.ftengine.gather_ragged(data, offsets, lengths, index, max_len, dtype)


class DeviceCopier:
    """Copies host tensors to a CUDA device on a side stream, ordered before later work on the compute stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device=device)

    def __call__(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Start the copies and make the current stream wait for them (no host sync)."""
        compute = torch.cuda.current_stream(self.device)
        # No wait on the compute stream first: sources are host memory it never writes and destinations are new,
        # so the copy may run while the device is still busy with the previous batch (that is the overlap).
        with torch.cuda.stream(self.stream):
            # Pageable memory would make the copy synchronous: pin it (a pinned cache's batches already are).
            # Pinned buffers come from the caching host allocator, which keeps them alive until the copy's event.
            out = {k: (v if v.is_pinned() else v.pin_memory()).to(self.device, non_blocking=True)
                   for k, v in tensors.items()}
        compute.wait_stream(self.stream)
        for v in out.values():
            # Memory allocated on the side stream but used on the compute stream: tell the caching allocator.
            v.record_stream(compute)
        return out
