"""Learning-rate schedule: warmup then constant / linear / cosine decay, per stage or over the whole run.

The factor is a pure function of (stage, optimizer steps taken in that stage), so it is the same after a
stage change or a resume as in an uninterrupted run: nothing but the step counters has to be saved.

Warmup rises linearly to 1 over `W` steps, reaching it on step `W - 1`: `(t + 1) / W` (no step runs at LR 0).
Decay then runs from 1 towards 0 over the remaining `T - W` steps: linear `1 - p`, cosine `(1 + cos(pi p)) / 2`
with `p = (t - W) / (T - W)`, as in transformers' `get_{linear,cosine}_schedule_with_warmup` shifted by one
warmup step. An `until_plateau` stage is scheduled over its maximum length; ending it early cuts the decay short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class Schedule:
    """LR multipliers for a run whose stages take `stage_steps` optimizer steps each.

    Args:
        spec: `spec.schedule` (kind, warmup_ratio, warmup_steps, per_stage).
        stage_steps: optimizer steps per stage (epochs x steps per epoch).
    """

    def __init__(self, spec: Any, stage_steps: Sequence[int]) -> None:
        self.kind = spec.kind
        self.per_stage = spec.per_stage
        self.stage_steps = [max(0, int(n)) for n in stage_steps]
        self._warmup_steps, self._warmup_ratio = spec.warmup_steps, spec.warmup_ratio

    def _span(self, stage: int, step: int) -> tuple[int, int]:
        """(position t, total T) in the span the schedule runs over."""
        if self.per_stage:
            return step, self.stage_steps[stage]
        return sum(self.stage_steps[:stage]) + step, sum(self.stage_steps)

    def warmup(self, total: int) -> int:
        """Warmup steps in a span of `total` steps."""
        steps = self._warmup_steps if self._warmup_steps is not None else math.ceil(self._warmup_ratio * total)
        return min(int(steps), total)

    def factor(self, stage: int, step: int) -> float:
        """Multiplier on each group's base LR for the optimizer step `step` (0-based) of stage `stage`."""
        t, total = self._span(stage, step)
        warmup = self.warmup(total)
        if t < warmup:
            return (t + 1) / warmup
        if self.kind == "constant" or total <= warmup:
            return 1.0
        progress = min(1.0, (t - warmup) / (total - warmup))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lrs(optimizer: Any, base_lrs: dict[str, float], factor: float) -> None:
    """Set every optimizer group's LR to its stage base LR times the schedule factor."""
    for group in optimizer.param_groups:
        group["lr"] = base_lrs[group["name"]] * factor
