"""L2-SP's per-group strengths: `optimizer.l2sp.strength` times the matching `optimizer.l2sp.multipliers`.

Strength of a pretrained backbone group `g` (the same in every stage):
`optimizer.l2sp.strength * prod(m for selector, m in optimizer.l2sp.multipliers if selector matches g)`.
A multiplier of 0 turns L2-SP off for the groups it matches (they decay toward zero with plain `weight_decay`).

Only used pretrained backbone groups have a strength: the head and LoRA adapter groups start new (there is no
pretrained value to decay toward), and an unused group (a BERT pooler under mean pooling) never trains. Selectors
are matched like a stage's `lr_multipliers` keys (adapter groups included, so `lora:*` is a known name), and a key
that matches no group, or only groups without a strength, is an error.
"""

from __future__ import annotations

import math
from typing import Any

from ftengine.planner.adapters import is_adapter_group
from ftengine.planner.checks import check, note
from ftengine.planner.graph import ExecutionGraph, GroupInfo, L2SPPlan
from ftengine.planner.selectors import HEAD, compress_ranges, select
from ftengine.spec import Spec


def _anchorable(group: GroupInfo) -> bool:
    """Whether a group has pretrained weights that train: not the head, not an adapter, not unused."""
    return group.used and group.name != HEAD and not is_adapter_group(group.name)


def l2sp_plan(spec: Spec, groups: tuple[GroupInfo, ...]) -> L2SPPlan | None:
    """The L2-SP plan for a graph's groups (backbone input to output, then the head); None when L2-SP is off."""
    cfg = spec.optimizer.l2sp
    if cfg is None:
        return None
    names = [g.name for g in groups if g.name != HEAD]
    matched = {key: set(select(key, names).groups) for key in cfg.multipliers}
    strengths = tuple(
        (g.name, cfg.strength * math.prod(m for key, m in cfg.multipliers.items() if g.name in matched[key]))
        for g in groups if _anchorable(g)
    )
    return L2SPPlan(dtype=cfg.dtype, strength=cfg.strength, groups=strengths)


@check
def l2sp_selectors(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    """Every `optimizer.l2sp.multipliers` key matches a group that L2-SP anchors."""
    if spec.optimizer.l2sp is None:
        return []
    names = list(graph.group_names[:-1])  # with adapter groups
    anchorable = [g.name for g in graph.groups if _anchorable(g)]
    example = anchorable[-1] if anchorable else "backbone"
    out = []
    for key in spec.optimizer.l2sp.multipliers:
        where = f"optimizer.l2sp.multipliers['{key}']"
        selection = select(key, names)
        if selection.problem:
            out.append(f"{where}: {selection.problem}")
        elif not set(selection.groups) & set(anchorable):
            shown = compress_ranges(selection.groups, graph.group_names)
            out.append(f"{where}: selects no pretrained backbone group, only {shown} (got '{key}'); L2-SP anchors "
                       "neither the head nor LoRA adapters (new weights) nor unused groups (never trained): name "
                       f"backbone groups, e.g. '{example}'")
    return out


@note
def l2sp_switched_off(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    """Multipliers of 0 on every group leave L2-SP nothing to do (the runtime then keeps no anchors)."""
    if graph.l2sp is None or graph.l2sp.anchored or not graph.l2sp.groups:
        return []
    return ["optimizer.l2sp: every group's multiplier is 0, so nothing decays toward its starting weights; "
            "drop optimizer.l2sp, or give some group a multiplier > 0"]
