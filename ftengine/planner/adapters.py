"""Adapter groups: the LoRA weights of layer group `G` form their own group `lora:G`.

With `adapters` set, the graph lists `lora:G` right after `G` (same `index`: it runs inside `G`). Rules:

- the base weights of an adapted group never train: a selector that picks `G` trains `lora:G` instead, and
  `all` / `backbone` pick the adapter groups (plus the head for `all`), not the base weights of un-adapted
  groups (name those explicitly to train them fully);
- an adapter group is named like any group: `lora:encoder.layer.5`, `lora:encoder.layer.2-5`, `lora:*`;
- the frozen prefix (and so the activation cache) ends below the lowest group that trains or whose adapter
  trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftengine.errors import SpecError
from ftengine.planner.selectors import HEAD, select

ADAPTER_PREFIX = "lora:"
ADAPTER_MARK = ".lora_"
"""peft names adapter weights `<layer>.lora_A.<adapter>.weight`, `<layer>.lora_B.<adapter>.weight`."""


def adapter_group(base: str) -> str:
    """`encoder.layer.5` -> `lora:encoder.layer.5`."""
    return ADAPTER_PREFIX + base


def base_group(name: str) -> str:
    """`lora:encoder.layer.5` -> `encoder.layer.5` (other names unchanged)."""
    return name.removeprefix(ADAPTER_PREFIX)


def is_adapter_group(name: str) -> bool:
    """Whether `name` is an adapter group."""
    return name.startswith(ADAPTER_PREFIX)


def adapted_groups(spec: Any, backbone_groups: Sequence[str]) -> list[str]:
    """Backbone groups `adapters.targets` selects, input to output.

    Raises:
        SpecError: a target selects nothing (or names the head), one line per problem.
    """
    problems, chosen = [], set()
    for i, selector in enumerate(spec.targets):
        found = select(selector, backbone_groups)
        if found.problem:
            problems.append(f"adapters.targets[{i}]: {found.problem}")
        chosen.update(g for g in found.groups if g != HEAD)
    if problems:
        raise SpecError(problems)
    return [g for g in backbone_groups if g in chosen]


def split_adapter_params(param_names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(base weights, adapter weights) of one group's parameter names."""
    return (tuple(n for n in param_names if ADAPTER_MARK not in n),
            tuple(n for n in param_names if ADAPTER_MARK in n))


def resolve_trainable(chosen: set[str], selectors: Sequence[str], names: Sequence[str]) -> set[str]:
    """Groups a stage trains once adapters exist (see module rules).

    Args:
        chosen: groups the stage's selectors matched (base, adapter and head names).
        selectors: the selectors as written (to tell `all` / `backbone` from explicit names).
        names: every group name of the graph but the head.
    """
    adapters = {n for n in names if is_adapter_group(n)}
    if not adapters:
        return chosen
    keyword = any(s in ("all", "backbone") for s in selectors)
    explicit = {g for s in selectors if s not in ("all", "backbone") for g in select(s, names).groups}
    out = {g for g in chosen if g == HEAD or is_adapter_group(g) or g in explicit} if keyword else set(chosen)
    for g in list(out):
        if adapter_group(g) in adapters:  # an adapted group trains through its adapter only
            out.discard(g)
            out.add(adapter_group(g))
    return out
