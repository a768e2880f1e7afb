"""`plan(spec, backbone)`: compile a spec's freeze plan against a backbone's layer groups.

Learning rate of a group in a stage (the schedule's warmup/decay factor multiplies it at run time):

- head: `(optimizer.head_lr or optimizer.lr) * stage.lr_scale * multipliers`
- backbone group at depth d below the top used backbone group:
  `optimizer.lr * freeze.layerwise_lr_decay**d * stage.lr_scale * multipliers`

where `multipliers` is the product of every `lr_multipliers` entry whose selector matches the group.
Frozen groups keep a computed LR (the runtime registers every parameter from step 0 and flips a mask).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ftengine.errors import PlanError
from ftengine.planner.adapters import adapter_group, base_group, is_adapter_group, resolve_trainable, split_adapter_params
from ftengine.planner.cache import boundary_bytes, cache_plan, example_len, refusals
from ftengine.planner import notes as _notes  # noqa: F401  (registers the plan notes)
from ftengine.planner.checks import run_checks
from ftengine.planner.facts import backbone_source, head_params, num_classes as resolve_classes, unused_groups
from ftengine.planner.graph import CachePoint, ExecutionGraph, GroupInfo, GroupPlan, StagePlan
from ftengine.planner.l2sp import l2sp_plan  # also registers the L2-SP selector check
from ftengine.planner.selectors import HEAD, select
from ftengine.planner.stages import StageDraft, draft_stages
from ftengine.spec import Spec


def plan(spec: Spec, backbone: Any, *, num_classes: int | None = None) -> ExecutionGraph:
    """Compile the execution graph. Pure: reads `backbone.groups` and shapes, never changes the model.

    Args:
        spec: a validated spec.
        backbone: a `Backbone` (meta-device structure is enough) or anything with `groups`, `modality`,
            `family`, `feature_dim` and `boundary_shape(index, example_len)`.
        num_classes: classes found in the loaded training data, when known (checked against the spec).

    Raises:
        PlanError: every problem at once, one line each (`freeze.stages[1].trainable: ...`).
    """
    names = [g.name for g in backbone.groups]
    unused = unused_groups(spec, backbone)
    used = [n for n in names if n not in unused]
    classes = resolve_classes(spec, num_classes)
    groups = _backbone_groups(backbone, unused) + (
        GroupInfo(HEAD, len(names), head_params(spec, backbone.feature_dim, classes), ()),)
    length = example_len(spec, backbone)
    stages = tuple(
        _stage(i, draft, spec, backbone, groups, used, length) for i, draft in enumerate(draft_stages(spec, used))
    )
    described = f"{spec.backbone.kind} {backbone.family} '{backbone_source(spec)}'"
    graph = ExecutionGraph(
        groups=groups, stages=stages, cache=cache_plan(spec), backbone=described,
        modality=backbone.modality, num_classes=classes, example_len=length, l2sp=l2sp_plan(spec, groups),
    )
    problems, notes = run_checks(spec, backbone, graph)
    if problems:
        raise PlanError(problems)
    return replace(graph, warnings=tuple(notes))


def _backbone_groups(backbone: Any, unused: set[str] | list[str]) -> tuple[GroupInfo, ...]:
    """One GroupInfo per backbone group; a group holding LoRA weights is followed by its adapter group
    `lora:<group>` (same index: it runs inside the group) that owns them."""
    out: list[GroupInfo] = []
    params = dict(backbone.named_parameters()) if hasattr(backbone, "named_parameters") else {}
    for i, g in enumerate(backbone.groups):
        base, lora = split_adapter_params(g.param_names)
        if not lora:
            out.append(GroupInfo(g.name, i, g.num_params, tuple(g.param_names), g.name not in unused))
            continue
        size = sum(params[n].numel() for n in lora)
        out.append(GroupInfo(g.name, i, g.num_params - size, base, g.name not in unused))
        out.append(GroupInfo(adapter_group(g.name), i, size, lora, g.name not in unused))
    return tuple(out)


def _stage(index: int, draft: StageDraft, spec: Spec, backbone: Any, groups: tuple[GroupInfo, ...],
           used: list[str], length: int | None) -> StagePlan:
    names = [g.name for g in groups[:-1]]
    chosen = {n for sel in draft.selectors for n in select(sel, names).groups}
    chosen = resolve_trainable(chosen, draft.selectors, names)
    trainable = {g.name for g in groups if g.name in chosen and g.used}
    live = {base_group(n) for n in trainable}  # a group runs live when it or its adapter trains
    selectable, names = names, [n for n in names if not is_adapter_group(n)]
    plans = tuple(
        GroupPlan(g.name, g.name in trainable, _lr(g, draft, spec, selectable, used) if g.used else 0.0,
                  spec.optimizer.weight_decay if g.used else 0.0)
        for g in groups
    )
    counts = [g.num_params for g in groups if g.name in trainable]
    prefix = 0
    while prefix < len(names) and names[prefix] not in live:
        prefix += 1
    return StagePlan(
        index=index, name=draft.name, epochs=draft.epochs, until_plateau=draft.until_plateau,
        patience=draft.patience, groups=plans,
        trainable_params=None if None in counts else sum(c for c in counts if c is not None),
        frozen_prefix=prefix, cache=_cache_point(spec, backbone, prefix, length),
        frozen_batchnorm=spec.freeze.frozen_batchnorm, frozen_dropout=spec.freeze.frozen_dropout,
    )


def _lr(group: GroupInfo, draft: StageDraft, spec: Spec, names: list[str], used: list[str]) -> float:
    opt = spec.optimizer
    if group.name == HEAD:
        base = opt.head_lr or opt.lr
    else:
        depth = len(used) - 1 - used.index(base_group(group.name))
        base = opt.lr * spec.freeze.layerwise_lr_decay ** depth
    # A multiplier on an adapted group applies to its adapter too (the adapter trains in the group's place).
    multipliers = [m for sel, m in draft.lr_multipliers.items()
                   if {group.name, base_group(group.name)} & set(select(sel, names).groups)]
    return base * draft.lr_scale * math.prod(multipliers)


def _cache_point(spec: Spec, backbone: Any, prefix: int, length: int | None) -> CachePoint:
    if prefix == 0:
        first = backbone.groups[0].name
        return CachePoint(0, False, f"no frozen prefix: the first group ({first}) trains", None)
    size = boundary_bytes(backbone, prefix, length, spec.cache.dtype)
    frozen = backbone.groups[:prefix]
    reasons = refusals(spec, frozen)
    if reasons:
        return CachePoint(prefix, False, "; ".join(reasons), size)
    return CachePoint(prefix, True, "the frozen prefix runs in eval mode on unaugmented inputs: same output every epoch", size)
