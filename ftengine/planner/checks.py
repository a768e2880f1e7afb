"""Registered plan checks: problems that need the model structure (errors) and notes (warnings).

A check is `check(spec, backbone, graph) -> list[str]`, one line per problem shaped
`where: what (got X); how to fix`. `plan()` runs every check and raises one `PlanError` with all lines.
Notes use the same signature and end up in `graph.warnings` (shown by `describe()` and `validate`).

Decisions recorded here:
- A stage may re-freeze groups an earlier stage trained (e.g. a final head-only refit after full
  fine-tuning): a note, not an error. The head leaving the trainable set is not even noted.
- A selector that also matches an unused group (a range or glob over a BERT pooler under mean pooling)
  silently skips it; naming the unused group exactly is an error, since the stage would not train it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ftengine.planner.facts import auto_pooling, labels_count, unused_groups
from ftengine.planner.graph import ExecutionGraph
from ftengine.planner.selectors import KEYWORDS, compress_list, select
from ftengine.spec import Spec

Check = Callable[[Spec, Any, ExecutionGraph], list[str]]
CHECKS: list[Check] = []
NOTES: list[Check] = []


def check(fn: Check) -> Check:
    """Register an error check."""
    CHECKS.append(fn)
    return fn


def note(fn: Check) -> Check:
    """Register a warning (shown, never fatal)."""
    NOTES.append(fn)
    return fn


def run_checks(spec: Spec, backbone: Any, graph: ExecutionGraph) -> tuple[list[str], list[str]]:
    """All problems and all notes, in registration order."""
    problems = [line for fn in CHECKS for line in fn(spec, backbone, graph)]
    notes = [line for fn in NOTES for line in fn(spec, backbone, graph)]
    return problems, notes


def _names(backbone: Any) -> list[str]:
    return [g.name for g in backbone.groups]


@check
def reserved_group_names(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    clash = [n for n in _names(backbone) if n in KEYWORDS]
    return [f"backbone: layer group name '{n}' is reserved for selectors (got groups {compress_list(_names(backbone))}); "
            "rename the group in the backbone adapter" for n in clash]


@check
def stage_selectors(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    """Every trainable selector and lr_multipliers key matches a group; unused groups are not named."""
    names, unused = list(graph.group_names[:-1]), unused_groups(spec, backbone)  # with adapter groups
    out = []
    for i, stage in enumerate(spec.freeze.stages or []):
        where = f"freeze.stages[{i}]"
        for sel in stage.trainable:
            problem = select(sel, names).problem
            if problem:
                out.append(f"{where}.trainable: {problem}")
            elif sel in unused:
                out.append(f"{where}.trainable: group '{sel}' gets no gradient: {unused[sel]} (got '{sel}'); "
                           f"drop it, or set head.pooling: {sel}")
        for key in stage.lr_multipliers:
            problem = select(key, names).problem
            if problem:
                out.append(f"{where}.lr_multipliers['{key}']: {problem}")
    return out


@check
def stage_trains_something(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    names, unused = list(graph.group_names[:-1]), unused_groups(spec, backbone)
    out = []
    for i, stage in enumerate(spec.freeze.stages or []):
        # Selector problems and exactly named unused groups are reported by stage_selectors.
        selected_ok = all(select(s, names).problem is None and s not in unused for s in stage.trainable)
        if selected_ok and not graph.stages[i].trainable:
            out.append(f"freeze.stages[{i}].trainable: the stage trains nothing (got {stage.trainable}); "
                       "name at least one group that receives gradients, e.g. head")
    return out


@check
def stage_names_unique(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, stage in enumerate(graph.stages):
        if stage.name in seen:
            out.append(f"freeze.stages[{i}].name: stage {seen[stage.name]} already has this name (got '{stage.name}'); "
                       "give each stage its own name (logs and checkpoints use it)")
        seen.setdefault(stage.name, i)
    return out


def _has_validation(spec: Spec) -> bool:
    return bool(getattr(spec.data, "validation", None)) or spec.data.split.validation > 0


@check
def plateau_settings(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    out = []
    for i, stage in enumerate(spec.freeze.stages or []):
        where = f"freeze.stages[{i}]"
        if stage.until_plateau and not _has_validation(spec):
            out.append(f"{where}.until_plateau: a plateau needs validation data (got data.split.validation 0 and no "
                       "data.validation file); set data.split.validation, e.g. 0.1, or end the stage by epochs")
        if stage.patience is not None and not stage.until_plateau:
            out.append(f"{where}.patience: only until_plateau stages use patience (got patience {stage.patience} with "
                       "until_plateau false); set until_plateau: true or drop patience")
    return out


@check
def class_count(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    declared, stated, found = spec.head.num_classes, labels_count(spec), graph.num_classes
    source = "sklearn_digits has" if spec.data.kind == "sklearn_digits" else "data.labels lists"
    if declared and stated and declared != stated:
        return [f"head.num_classes: {source} {stated} classes (got {declared}); drop head.num_classes or make it {stated}"]
    if stated and found and found != stated:
        return [f"data.labels: the training data has {found} labels but data.labels lists {stated} (got "
                f"{spec.data.labels}); list every label in the data"]
    if declared and found and found != declared:
        return [f"head.num_classes: the training data has {found} labels (got {declared}); drop head.num_classes "
                "(it defaults to the labels found) or fix the data"]
    return []


@check
def head_pooling_fits(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    """The pooling applies to the backbone's modality (the heads package's rule) and a `pooler` exists."""
    from ftengine.errors import PlanError
    from ftengine.heads import resolve_pooling

    try:
        resolve_pooling(spec.head.pooling, backbone)
    except PlanError as err:
        return err.problems
    if spec.head.pooling == "pooler" and "pooler" not in _names(backbone):
        return [f"head.pooling: this backbone has no pooler group (got 'pooler'; groups {compress_list(_names(backbone))}); "
                f"use auto ({auto_pooling(backbone.family)} for this backbone)"]
    return []


@check
def cache_on_means_cached(spec: Spec, backbone: Any, graph: ExecutionGraph) -> list[str]:
    if spec.cache.enabled != "on":
        return []
    out = [f"cache.enabled: stage {s.index} ({s.name}) cannot cache its frozen prefix: {s.cache.reason} (got 'on'); "
           "set cache.enabled: auto to run such stages uncached"
           for s in graph.stages if s.frozen_prefix > 0 and not s.cache.allowed]
    if all(s.frozen_prefix == 0 for s in graph.stages):
        out.append("cache.enabled: no stage has a frozen prefix to cache (got 'on' while every stage trains the "
                   f"first group, {graph.groups[0].name}); set cache.enabled: auto, or freeze the lower groups")
    return out

