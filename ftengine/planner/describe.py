"""`describe(graph)`: the table a person checks before spending compute (`ftengine plan`, the start of a run)."""

from __future__ import annotations

from ftengine.planner.adapters import is_adapter_group
from ftengine.planner.graph import ExecutionGraph, StagePlan
from ftengine.planner.selectors import HEAD, compress_list, compress_ranges


def human_count(n: int) -> str:
    """`1,155`, `22.7M`, `4.7K` style parameter counts."""
    for threshold, size, unit in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "K")):
        if n >= threshold:
            return f"{n / size:.1f}{unit}"
    return f"{n:,}"


def human_bytes(n: int) -> str:
    """`192.0 KiB`, `1.5 MiB`."""
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _epochs(stage: StagePlan) -> str:
    if stage.until_plateau:
        return f"<={stage.epochs} (until plateau, patience {stage.patience})"
    return str(stage.epochs)


def _params(graph: ExecutionGraph, stage: StagePlan) -> str:
    total = graph.total_params
    if stage.trainable_params is not None and total:
        share = 100 * stage.trainable_params / total
        pct = "<0.1%" if 0 < share < 0.1 else f"{share:.1f}%"
        return f"{human_count(stage.trainable_params)} / {human_count(total)} ({pct})"
    # Head size unknown until the labels are read: show the backbone part.
    part = sum(g.num_params or 0 for g in graph.backbone_groups if g.name in stage.trainable)
    whole = sum(g.num_params or 0 for g in graph.backbone_groups)
    shown = " + ".join(([human_count(part)] if part else []) + (["head"] if HEAD in stage.trainable else []))
    return f"{shown} / {human_count(whole)} + head"


def _trainable(graph: ExecutionGraph, stage: StagePlan) -> str:
    trainable = stage.trainable
    if set(trainable) == {g.name for g in graph.groups if g.used}:
        return "all"
    return compress_ranges(trainable, graph.group_names) or "(nothing)"


def _cache_line(graph: ExecutionGraph, stage: StagePlan) -> str:
    cache = stage.cache
    if cache.boundary == 0:
        return f"  stage {stage.index}: nothing to cache ({cache.reason})"
    where = f"after {graph.groups[cache.boundary - 1].name} (boundary {cache.boundary})"
    if not cache.allowed:
        return f"  stage {stage.index}: not cached {where}: {cache.reason}"
    if cache.bytes_per_example is None:
        return f"  stage {stage.index}: cached {where}"
    bound = "up to " if graph.modality == "text" else ""
    unit = f"{graph.example_len} tokens" if graph.modality == "text" else f"{graph.example_len}px"
    fits = graph.cache_budget_mb * 2**20 // cache.bytes_per_example
    return (f"  stage {stage.index}: cached {where}, {bound}{human_bytes(cache.bytes_per_example)}/example "
            f"{graph.cache_dtype} at {unit}; the {graph.cache_budget_mb} MiB budget holds {fits:,} examples")


def _lr_rows(graph: ExecutionGraph) -> list[list[str]]:
    """Group x stage LR matrix, head first then the backbone top-down; identical neighbours merged."""
    rows: list[tuple[list[str], list[str]]] = []
    for info in reversed(graph.groups):
        cells = []
        for stage in graph.stages:
            plan = stage.group(info.name)
            cells.append("unused" if not info.used else f"{plan.lr:.2e}" if plan.trainable else "-")
        if rows and rows[-1][1] == cells and info.name != HEAD and rows[-1][0][-1] != HEAD:
            rows[-1][0].append(info.name)
        else:
            rows.append(([info.name], cells))
    out = [["group", *(f"{s.index}:{s.name}" for s in graph.stages)]]
    for names, cells in rows:
        out.append([compress_ranges(names, graph.group_names), *cells])
    return out


def _l2sp_lines(graph: ExecutionGraph) -> list[str]:
    """L2-SP strength per backbone group, top-down, identical neighbours merged (empty when L2-SP is off)."""
    l2sp = graph.l2sp
    if l2sp is None:
        return []
    ever = {name for stage in graph.stages for name in stage.trainable}
    rows: list[tuple[list[str], str]] = []
    for name, strength in reversed(l2sp.groups):
        cell = "- (frozen throughout)" if name not in ever else f"{strength:.2e}" if strength else "off (weight_decay)"
        if rows and rows[-1][1] == cell:
            rows[-1][0].append(name)
        else:
            rows.append(([name], cell))
    universe = [name for name, _ in l2sp.groups]
    table = [["group", "strength"], *([compress_ranges(names, universe), cell] for names, cell in rows)]
    per_param = {"fp32": 4, "bf16": 2}.get(l2sp.dtype, 4)
    return ["", f"L2-SP (decay toward the starting weights, strength {l2sp.strength:.2e} x multipliers; the head and "
                "LoRA adapters keep weight_decay):",
            f"  anchors: {l2sp.dtype}, {per_param} B per parameter of the groups that train",
            *("  " + r for r in _table(table))]


def _adapter_lines(graph: ExecutionGraph) -> list[str]:
    """LoRA adapter groups: parameters per group and their share of the whole model (empty without adapters)."""
    adapters = [g for g in graph.backbone_groups if is_adapter_group(g.name)]
    if not adapters:
        return []
    total = graph.total_params or sum(g.num_params or 0 for g in graph.backbone_groups)
    size = sum(g.num_params or 0 for g in adapters)
    rows = [["adapter group", "params", "share"]]
    rows += [[g.name, human_count(g.num_params or 0), f"{100 * (g.num_params or 0) / total:.3f}%"] for g in adapters]
    rows.append(["all adapters", human_count(size), f"{100 * size / total:.3f}%"])
    return ["", f"adapters (LoRA; share of all {human_count(total)} params):", *("  " + r for r in _table(rows))]


def describe(graph: ExecutionGraph) -> str:
    """Render the plan: header, stage table, learning-rate matrix, L2-SP strengths, adapters, cache decisions,
    notes."""
    head = graph.groups[-1]
    classes = f"{graph.num_classes} classes" if graph.num_classes else "classes from the training labels"
    head_size = human_count(head.num_params) if head.num_params is not None else "?"
    lines = [
        f"backbone: {graph.backbone}, {len(graph.backbone_groups)} groups "
        f"({compress_list([g.name for g in graph.backbone_groups])})",
        f"head: {head_size} params ({classes})",
        "",
    ]
    rows = [["stage", "name", "epochs", "trainable", "params trainable / total", "cache"]]
    for s in graph.stages:
        cache = "yes" if s.cache.allowed else "-" if s.cache.boundary == 0 else "no"
        rows.append([str(s.index), s.name, _epochs(s), _trainable(graph, s), _params(graph, s), cache])
    lines += _table(rows)
    lines += ["", "learning rates (peak, before warmup/decay; '-' frozen):"]
    lines += ["  " + row for row in _table(_lr_rows(graph))]
    lines += _l2sp_lines(graph)
    lines += _adapter_lines(graph)
    fill = {"fp32": "", "bf16": " (frozen prefix computed in bf16)",
            "auto": " (frozen prefix in bf16 where the device computes it natively, else fp32)"}
    lines += ["", f"activation cache{fill[graph.cache.fill_precision]}:"]
    lines += [_cache_line(graph, s) for s in graph.stages]
    if graph.warnings:
        lines += ["", "notes:"] + [f"  - {w}" for w in graph.warnings]
    return "\n".join(lines)
