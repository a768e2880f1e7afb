"""LR schedule against transformers' schedules, per stage and over the whole run."""

from __future__ import annotations

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from ftengine.runtime.schedule import Schedule
from ftengine.spec.training import ScheduleSpec


def _reference(kind: str, warmup: int, total: int) -> list[float]:
    """transformers' multipliers (its warmup starts at 0; after warmup it is the decay we implement)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    make = get_linear_schedule_with_warmup if kind == "linear" else get_cosine_schedule_with_warmup
    sched = make(opt, warmup, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_matches_transformers_and_warmup_starts_above_zero(kind):
    sched = Schedule(ScheduleSpec(kind=kind, warmup_steps=4), [20])
    ref = _reference(kind, 4, 20)
    ours = [sched.factor(0, t) for t in range(20)]
    assert ours[4:] == pytest.approx(ref[4:])
    assert ours[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(f > 0 for f in ours)


def test_warmup_ratio_rounds_up_and_constant_holds():
    sched = Schedule(ScheduleSpec(kind="constant", warmup_ratio=0.1), [25])
    assert sched.warmup(25) == 3
    assert [sched.factor(0, t) for t in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_per_stage_restarts_warmup_and_decay_in_each_stage():
    sched = Schedule(ScheduleSpec(kind="linear", warmup_steps=2, per_stage=True), [10, 6])
    assert [sched.factor(1, t) for t in range(6)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert sched.factor(0, 9) == pytest.approx(1 / 8)


def test_whole_run_schedule_continues_across_stages():
    sched = Schedule(ScheduleSpec(kind="cosine", warmup_steps=3, per_stage=False), [10, 6])
    ref = _reference("cosine", 3, 16)
    run = [sched.factor(0, t) for t in range(10)] + [sched.factor(1, t) for t in range(6)]
    assert run[3:] == pytest.approx(ref[3:])
