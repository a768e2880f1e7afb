"""Optimizer parameter groups: one per (layer group, decay / no-decay), all registered from step 0.

A stage change flips each group's `trainable` mask and sets its base learning rate and weight decay from the
plan; it never adds or removes groups, so optimizer state, checkpoints and resume stay valid across unfreezes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ftengine.planner.graph import L2SPPlan

DECAY, NO_DECAY = "decay", "no_decay"


def group_name(layer_group: str, kind: str) -> str:
    """Optimizer group name, e.g. `encoder.layer.5/decay`."""
    return f"{layer_group}/{kind}"


def layer_group_of(optimizer_group: dict[str, Any]) -> str:
    """The layer group an optimizer group belongs to (`encoder.layer.5/decay` -> `encoder.layer.5`)."""
    return optimizer_group["name"].rsplit("/", 1)[0]


def is_no_decay(param_name: str, no_decay: Sequence[str]) -> bool:
    """Whether `param_name` matches any `optimizer.no_decay` substring (case-insensitive)."""
    lower = param_name.lower()
    return any(s.lower() in lower for s in no_decay)


def build_param_groups(model: nn.Module, graph: Any, no_decay: Sequence[str],
                       l2sp: L2SPPlan | None = None) -> list[dict[str, Any]]:
    """Every parameter of `model` in exactly one group, in plan order (input to output, head last).

    Groups are built for the first stage's settings; `apply_stage_settings` updates them later. A layer group
    with no parameters of one kind gets no (empty) optimizer group for it. With `l2sp` (the plan's
    `graph.l2sp`), the decay group of each layer group with a strength (alpha > 0) decays toward its starting
    weights with it instead of toward zero (weight_decay 0 there: Li et al.'s alpha / beta split); the others
    (the head, adapters, groups a multiplier of 0 turned off) keep plain weight decay.
    """
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        kind = NO_DECAY if is_no_decay(name, no_decay) else DECAY
        buckets.setdefault(group_name(graph.group_of(name), kind), []).append(param)
    stage = graph.stages[0]
    groups = []
    for info in graph.groups:
        plan = stage.group(info.name)
        for kind in (DECAY, NO_DECAY):
            params = buckets.pop(group_name(info.name, kind), [])
            if params:
                anchored = l2sp.strength_of(info.name) if l2sp is not None and kind == DECAY else 0.0
                decay = plan.weight_decay if kind == DECAY and not anchored else 0.0
                groups.append({"params": params, "name": group_name(info.name, kind), "lr": plan.lr,
                               "weight_decay": decay, "trainable": plan.trainable, "l2sp": anchored})
    return groups


def apply_stage_settings(optimizer: Any, stage: Any) -> dict[str, float]:
    """Set masks, weight decay and base LRs of every optimizer group for `stage`.

    Returns:
        Group name -> base (peak) learning rate of this stage; the schedule multiplies these each step.
    """
    base: dict[str, float] = {}
    for group in optimizer.param_groups:
        plan = stage.group(layer_group_of(group))
        group["trainable"] = plan.trainable
        if not group["name"].endswith(NO_DECAY) and not group.get("l2sp"):  # L2-SP replaces zero-decay there
            group["weight_decay"] = plan.weight_decay
        base[group["name"]] = plan.lr
    return base


def lr_summary(optimizer: Any) -> dict[str, float]:
    """Current LR per trainable layer group (decay and no-decay share one), for logs and metrics.jsonl."""
    out: dict[str, float] = {}
    for group in optimizer.param_groups:
        if group["trainable"]:
            out.setdefault(layer_group_of(group), float(group["lr"]))
    return out
