"""Registered plan notes: things worth a second look that are not errors (see `checks.py`)."""

from __future__ import annotations

from typing import Any

from ftengine.planner.adapters import adapter_group
from ftengine.planner.checks import note
from ftengine.planner.facts import unused_groups
from ftengine.planner.graph import ExecutionGraph
from ftengine.planner.selectors import HEAD, compress_ranges, select
from ftengine.spec import Spec, TrainingSpec


@note
def unused(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    return [f"{name} never trains: {why} (set head.pooling: {name} to use it)"
            for name, why in unused_groups(spec, backbone).items()]


@note
def refrozen(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    out = []
    trained: dict[str, int] = {}
    universe = graph.group_names
    for stage in graph.stages:
        now = set(stage.trainable)
        again = [n for n in universe if n in trained and n not in now and n != HEAD]
        if again:
            first = min(trained[n] for n in again)
            out.append(f"stage {stage.index} ({stage.name}) freezes {compress_ranges(again, universe)} again after "
                       f"stage {first} trained them; fine for a refit of the upper layers, otherwise check the stages")
        for name in now:
            trained.setdefault(name, stage.index)
    return out


@note
def multipliers_on_frozen(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    names = list(graph.group_names[:-1])
    out = []
    for i, stage in enumerate(spec.freeze.stages or []):
        for key in stage.lr_multipliers:
            matched = select(key, names).groups
            # A multiplier on an adapted group reaches its adapter group `lora:<group>`.
            reached = {*matched, *(adapter_group(g) for g in matched)}
            if matched and not reached & set(graph.stages[i].trainable):
                out.append(f"freeze.stages[{i}].lr_multipliers['{key}'] matches only groups frozen in this stage "
                           f"({compress_ranges(matched, graph.group_names)}); it has no effect here")
    return out


@note
def repeated_stages(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    out = []
    for prev, stage in zip(graph.stages, graph.stages[1:]):
        if prev.groups == stage.groups and prev.until_plateau == stage.until_plateau:
            restart = " (each restarts the LR schedule)" if spec.schedule.per_stage else ""
            out.append(f"stages {prev.index} and {stage.index} train the same groups at the same learning rates"
                       f"{restart}; merge them unless that is intended")
    return out


@note
def settings_without_effect(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    out = []
    freeze = spec.freeze
    backbone_trains = any(set(s.trainable) - {HEAD} for s in graph.stages)
    if freeze.layerwise_lr_decay < 1.0 and not backbone_trains:
        out.append(f"freeze.layerwise_lr_decay ({freeze.layerwise_lr_decay}) has no effect: no stage trains the backbone")
    default_epochs = TrainingSpec.model_fields["epochs"].default
    if freeze.preset in ("head_then_full", "gradual_unfreeze") and spec.training.epochs != default_epochs:
        out.append(f"training.epochs ({spec.training.epochs}) is not used by preset {freeze.preset}: stage lengths come "
                   f"from freeze.head_epochs ({freeze.head_epochs}) and freeze.stage_epochs ({freeze.stage_epochs})")
    used = sum(g.used for g in graph.backbone_groups)
    if freeze.preset == "gradual_unfreeze" and freeze.max_unfrozen and freeze.max_unfrozen > used:
        out.append(f"freeze.max_unfrozen ({freeze.max_unfrozen}) is more than the {used} backbone groups that can train; "
                   "all of them unfreeze")
    return out
