"""Host -> device copy of gathered batches on a side stream (batches are gathered by ``kernels.ops.gather_ragged``).

On a GPU run whose cache lives in host memory (pinned) or on disk, a batch is gathered on the CPU and copied
to the device on a side stream: the copy of batch ``k+1`` runs while the device still executes the queued
forward/backward of batch ``k`` (the host issues work ahead of the device), and the compute stream waits on
the copy with an event, never with a host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
