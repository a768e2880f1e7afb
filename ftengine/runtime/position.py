"""Where a run is (`Position`, saved in every checkpoint), the epoch's remaining batches from there (`Primed`),
and reading a step's device-side flag without an extra host sync (`read_after`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Position:
    """Where a run is: the next batch to train. Saved in every checkpoint."""

    stage: int = 0
    epoch: int = 0  # epoch within the stage
    batches_done: int = 0  # micro-batches of this epoch already trained
    step_in_stage: int = 0  # optimizer steps taken in this stage (the schedule's clock)
    global_step: int = 0
    epochs_done: int = 0  # epochs completed in the run
    finished: bool = False
    loss_sum: float = 0.0  # this epoch's training loss so far (sum over examples) ...
    running_loss: float | torch.Tensor = 0.0  # ... plus its part not yet folded into loss_sum ...
    examples: int = 0  # ... and the examples both cover
    skipped_steps: int = 0

    def next_epoch(self, stage_epochs: int, *, end_stage: bool, stop: bool, last_stage: bool) -> None:
        """Move past a finished epoch (and its stage when it was the last epoch or plateaued)."""
        self.epochs_done += 1
        self.batches_done, self.loss_sum, self.running_loss, self.examples = 0, 0.0, 0.0, 0
        if stop:
            self.finished = True
        elif end_stage or self.epoch + 1 >= stage_epochs:
            self.stage, self.epoch, self.step_in_stage = self.stage + 1, 0, 0
            self.finished = last_stage
        else:
            self.epoch += 1


class Primed:
    """A DataLoader whose iterator is created up front (so creating it cannot disturb the RNG mid-epoch).

    ``global_sizes``: examples in each whole batch it yields (over every rank's share).
    """

    def __init__(self, loader: Any) -> None:
        self._len = len(loader)
        self.global_sizes = loader.batch_sampler.global_sizes()
        self._it = iter(loader)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return self._it


def read_after(flag: torch.Tensor) -> Callable[[], bool]:
    """Start copying a 0-dim bool `flag` to the host; the returned function reads it.

    On CUDA the copy is queued behind the backward pass, and the flag is read after the optimizer step, which
    (with clipping, skip_nonfinite or a GradScaler) has already waited for the stream past that copy: reading it
    then costs no second host sync, and never holds back the optimizer's kernel launches.
    """
    if flag.device.type != "cuda":
        return lambda: bool(flag)
    host = torch.empty((), dtype=torch.bool, pin_memory=True)
    host.copy_(flag, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def read() -> bool:
        copied.synchronize()  # returns at once when the optimizer's norm read already passed it
        return bool(host)

    return read
