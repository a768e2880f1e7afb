"""The GPU check's last step: merge the raw results into the result folder and judge the issue's targets.

Inputs (the work folder): ``steps.tsv`` (name, exit status, seconds, limit: one line per step, written by
bench/gpu_check.sh) and ``optimizer*.json`` (optimizer sweeps, each in its own process and time limit). The
result folder already holds ``pytest.xml``, ``cache.json``, ``e2e.json``, ``profile.json`` and ``fill.json`` when
those steps got that far. Written: ``optimizer.json`` (the sweeps as one result) and ``summary.json``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ftengine.bench.e2e_report import stage_text
from ftengine.bench.kit import environment

TARGETS = dict(copy_ratio=0.85, minilm_speedup=2.0, frozen_ratio=0.55, gather_ratio=0.8)
"""The issue's GPU targets: optimizer >= 85% of copy bandwidth (BERT-base, 1B), >= 2x torch fused at 26 groups for
MiniLM-L6, <= 0.55x time at 50% frozen; gather >= 80% of copy bandwidth."""


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_steps(work: Path) -> list[dict[str, Any]]:
    """The steps as the script recorded them (rc 0: passed; 124/137: its time limit ran out)."""
    path = work / "steps.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [dict(step=r[0], rc=int(r[1]), seconds=float(r[2]), limit=int(r[3]), note=r[4] if len(r) > 4 else "",
                 timed_out=int(r[1]) in (124, 137)) for r in rows]


def merge_optimizer(work: Path, out: Path) -> dict[str, Any] | None:
    """The per-model sweeps as one result file (rows joined, summary recomputed over all of them)."""
    from ftengine.bench.optimizer import summarize

    parts = [p for p in (_load(f) for f in sorted(work.glob("optimizer*.json"))) if p]
    if not parts:
        return None
    rows = [r for p in parts for r in p["results"]]
    merged = dict(benchmark="optimizer", environment=parts[0]["environment"],
                  settings={",".join(p["settings"]["models"]): p["settings"] for p in parts},
                  environments_end=[p["environment"].get("loadavg_end") for p in parts],
                  skipped=[s for p in parts for s in p["skipped"]], summary=summarize(rows), results=rows)
    (out / "optimizer.json").write_text(json.dumps(merged, indent=2, default=str) + "\n")
    return merged


def pytest_counts(path: Path) -> dict[str, Any] | None:
    """tests / failures / errors / skipped from a JUnit XML file, and the failing tests' names."""
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failing = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
               if c.find("failure") is not None or c.find("error") is not None]
    return dict(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                failing=failing)


def optimizer_targets(result: dict[str, Any]) -> dict[str, Any]:
    """Copy-bandwidth share (BERT-base, 1B), speedup at 26 groups (MiniLM-L6), time at 50% frozen."""
    rows = [r for r in result["results"] if r["impl"].startswith("ftengine")]
    bandwidth = [dict(case=r["case"], impl=r["impl"], ratio_to_copy=round(r["ratio_to_copy"], 3)) for r in rows
                 if r["model"] in ("bert-base", "llama-1b") and r["frozen"] == 0]
    speed = [dict(case=r["case"], impl=r["impl"], speedup=round(r["speedup_vs_torch_fused"] or 0, 3)) for r in rows
             if r["model"] == "minilm-l6" and r["groups"] == 26 and r["frozen"] == 0]
    frozen = [f for f in result["summary"]["frozen_scaling"] if f["impl"].startswith("ftengine")]

    def judged(items: list[dict[str, Any]], key: str, ok: Any) -> dict[str, Any]:
        values = [i[key] for i in items]
        return dict(met=bool(values) and all(ok(v) for v in values), min=min(values, default=None),
                    max=max(values, default=None), cases=items)

    return {f"optimizer_copy_bandwidth_ge_{TARGETS['copy_ratio']}":
            judged(bandwidth, "ratio_to_copy", lambda v: v >= TARGETS["copy_ratio"]),
            f"optimizer_minilm_26_groups_ge_{TARGETS['minilm_speedup']}x_torch_fused":
            judged(speed, "speedup", lambda v: v >= TARGETS["minilm_speedup"]),
            f"optimizer_50pct_frozen_time_le_{TARGETS['frozen_ratio']}":
            judged(frozen, "time_ratio", lambda v: v <= TARGETS["frozen_ratio"])}


def gather_target(cache: dict[str, Any]) -> dict[str, Any]:
    """The native gather's share of copy bandwidth, fp32 and bf16 storage."""
    gather = cache.get("gather", {})
    ratios = {store: gather[store].get("native_ratio_to_copy") for store in ("fp32", "bf16") if store in gather}
    known = [v for v in ratios.values() if v is not None]
    return {f"gather_copy_bandwidth_ge_{TARGETS['gather_ratio']}":
            dict(met=bool(known) and min(known) >= TARGETS["gather_ratio"], ratios=ratios)}


def e2e_lines(e2e: dict[str, Any]) -> list[str]:
    """Per recipe and implementation: epoch seconds and tokens/s per stage, time to target, the ratio to ftengine."""
    lines = []
    for recipe, impls in e2e["summary"].items():
        for impl, f in impls.items():
            stages = stage_text(f)
            ratio = f.get("ftengine_speedup_time_to_target", {}).get("median")
            lines.append(f"e2e {recipe}/{impl}: {stages}; total {f['total_seconds']['median']:.1f} s"
                         + (f"; ftengine {ratio:.2f}x faster to target" if ratio else ""))
    return lines


def fill_lines(fill: dict[str, Any]) -> list[str]:
    """The fill-precision step: median fill seconds and mean best validation accuracy per precision, and the gap."""
    summary = fill["summary"]
    lines = [f"fill {p}: {summary[p]['fill_seconds_median']:.2f} s median fill, best val accuracy mean "
             f"{summary[p]['best_val_accuracy_mean']:.4f} over seeds {summary[p]['seeds']}"
             for p in ("fp32", "bf16") if p in summary]
    if "bf16_vs_fp32" in summary:
        c = summary["bf16_vs_fp32"]
        within = "within" if c["accuracy_within_tolerance"] else "NOT within"
        lines.append(f"fill bf16 vs fp32: {c['fill_speedup']:.2f}x faster, accuracy gap "
                     f"{100 * c['accuracy_gap_mean']:+.2f} points ({within} {100 * c['tolerance']:.1f})")
    return lines


def collect(work: Path, out: Path, device: str = "cuda") -> dict[str, Any]:
    """Write OUT/optimizer.json and OUT/summary.json; returns the summary (with printable ``lines``)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"  # say what there was rather than fail: the steps' own results name their device
    steps = read_steps(work)
    optimizer, cache = merge_optimizer(work, out), _load(out / "cache.json")
    e2e, profile, fill = _load(out / "e2e.json"), _load(out / "profile.json"), _load(out / "fill.json")
    targets: dict[str, Any] = {}
    if optimizer:
        targets.update(optimizer_targets(optimizer))
    if cache:
        targets.update(gather_target(cache))
        targets.update({f"cache_{k}": dict(met=v) for k, v in cache.get("targets", {}).items()})
    tests = pytest_counts(out / "pytest.xml")
    lines = [f"step {s['step']:<20} rc {s['rc']:>3}  {s['seconds']:6.1f} s of {s['limit']} s"
             + (" TIMED OUT" if s["timed_out"] else "") + (f"  ({s['note']})" if s["note"] else "") for s in steps]
    if tests:
        lines.append(f"tests: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
                     f"{tests['skipped']} skipped" + (f"; failing: {', '.join(tests['failing'][:10])}"
                                                      if tests["failing"] else ""))
    lines += [f"target {name}: {'met' if t['met'] else 'NOT met'}"
              + (f" (min {t['min']}, max {t['max']})" if t.get("min") is not None else
                 " (no case measured)" if "cases" in t else "") for name, t in targets.items()]
    lines += e2e_lines(e2e) if e2e else []
    lines += fill_lines(fill) if fill else []
    for stage in (profile or {}).get("stages", []):
        lines.append(f"profile {stage['stage']}: {stage['wall_ms_per_step']:.2f} ms/step, device busy "
                     f"{stage['busy_ms_per_step']:.2f} ms; top: " + ", ".join(
                         f"{k['name'][:48]} {100 * k['share']:.0f}%" for k in stage["top"][:4]))
    summary = dict(bench="gpu_check", environment=environment(device), steps=steps,
                   failed_steps=[s["step"] for s in steps if s["rc"] != 0], tests=tests, targets=targets,
                   fill_precision=fill["summary"] if fill else None,
                   files=sorted(p.name for p in out.iterdir() if p.is_file()) + ["summary.json"], lines=lines)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
