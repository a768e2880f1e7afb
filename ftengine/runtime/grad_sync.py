"""Data-parallel gradient sync: one all-reduce over exactly the trainable bytes of the flat gradient buffer.

``DistributedDataParallel`` fixes at wrap time which parameters it averages, so a group unfrozen later is never
reduced and the replicas drift apart (pytorch/pytorch#12603). ftengine owns the gradients instead: every
parameter lives in one flat buffer per (device, dtype), laid out group by group in plan order (input to output,
head last), and unfreezing goes top-down, so a stage's trainable groups form one contiguous tail of it. After
the last backward of a step, each bucket reduces the merged range of its trainable groups (one call when they
are contiguous): frozen groups cost no communication, and an unfreeze needs no re-wrapping.

Before that, one small control all-reduce makes every rank take the same decisions: which parameters have a
gradient this step (torch.optim steps only those; a rank whose share of the batch was empty has none), whether
anyone asked to stop (Ctrl-C / SIGTERM), whether any rank's loss was non-finite, and the step's summed loss.

Losses are scaled by (examples on this rank) / (examples in the global batch) before backward, so the SUM of
the ranks' gradients is the gradient of the global batch's mean loss: the same as one process, up to float
reduction order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ftengine.runtime.distributed import World


@dataclass
class StepAgreement:
    """What every rank agreed on for one optimizer step."""

    stop: bool  # some rank asked to stop (Ctrl-C, SIGTERM)
    finite: torch.Tensor  # 0-dim bool: every rank's losses of this step were finite
    loss_sum: torch.Tensor  # 0-dim float32: the step's summed loss over every rank's examples


def trainable_ranges(segments: list[tuple[int, int]], trainable: list[bool]) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` element ranges of the trainable groups' segments (adjacent ones joined)."""
    out: list[list[int]] = []
    for (offset, length), flag in zip(segments, trainable):
        if not flag or length == 0:
            continue
        if out and out[-1][1] == offset:
            out[-1][1] = offset + length
        else:
            out.append([offset, offset + length])
    return [(a, b) for a, b in out]


class GradSync:
    """Agree on a step and all-reduce the trainable gradients of a ``FlatOptimizer`` (identity for one process).

    Args:
        world: the process group.
        optimizer: the FlatOptimizer whose flat buffers hold the gradients.
    """

    def __init__(self, world: World, optimizer: torch.optim.Optimizer) -> None:
        self.world, self.optimizer = world, optimizer

    def trainable_bytes(self) -> int:
        """Bytes of the current stage's trainable gradient ranges (what one step all-reduces)."""
        flags = [bool(g["trainable"]) for g in self.optimizer.param_groups]
        return sum((end - start) * b.grad.element_size() for b in self.optimizer.buckets
                   for start, end in trainable_ranges(list(b.layout.segments), flags))

    def step(self, *, stop: bool, finite: torch.Tensor, loss_sum: torch.Tensor) -> StepAgreement:
        """Call after the step's last backward, before the optimizer step, on every rank."""
        if not self.world.distributed:
            return StepAgreement(stop, finite, loss_sum)
        buckets = self.optimizer.buckets
        flags = [bool(g["trainable"]) for g in self.optimizer.param_groups]
        device = loss_sum.device
        # (rows + 3,) float32: per parameter "has a grad here", then stop, non-finite, loss sum
        local = [torch.tensor([float(p.grad is not None) for p, _ in b.slots], device=device) for b in buckets]
        extra = torch.stack([torch.tensor(float(stop), device=device), (~finite).float(), loss_sum.float()])
        control = self.world.all_reduce_(torch.cat([*local, extra]), what="agreeing on the step")
        stop_all, nonfinite, total = control[-3:].tolist()
        agreed = control[:-3].split([len(b.slots) for b in buckets])
        for bucket, mine, anyone in zip(buckets, local, agreed):
            self._reduce_bucket(bucket, flags, mine.tolist(), anyone.tolist())
        return StepAgreement(stop_all > 0, torch.tensor(nonfinite == 0, device=device),
                             torch.tensor(total, dtype=torch.float32, device=device))

    @torch.no_grad()
    def _reduce_bucket(self, bucket: object, flags: list[bool], mine: list[float], anyone: list[float]) -> None:
        grad = bucket.grad
        # A parameter with a gradient on some rank but not here contributes zeros (its slice holds stale values).
        missing = [(p, o) for (p, o), m, a in zip(bucket.slots, mine, anyone) if a > 0 and m == 0]
        for p, o in missing:
            grad[o:o + p.numel()].zero_()
        for start, end in trainable_ranges(list(bucket.layout.segments), flags):
            self.world.all_reduce_(grad[start:end], purpose="grads", what="all-reducing gradients")
        for p, o in missing:  # stepped on every rank, as on the ranks that had its gradient
            p.grad = grad[o:o + p.numel()].view_as(p)
