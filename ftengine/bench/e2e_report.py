"""Table and chart of an e2e bench result (`ftengine bench e2e`, bench/e2e.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftengine.bench.kit import pyplot, save_chart

NAMES = {"ftengine": "ftengine", "plain": "plain PyTorch", "hf": "HF Trainer"}


def table(result: dict[str, Any]) -> str:
    """Medians per recipe and implementation, with the same-run time-to-target ratio to ftengine."""
    head = (f"{'recipe':<20}{'impl':<15}{'s/epoch':>9}{'to target':>11}{'total s':>9}{'final acc':>11}{'RSS MB':>8}"
            f"{'ftengine faster':>16}")
    lines = [head, "-" * len(head)]
    for recipe, impls in result["summary"].items():
        for impl, f in impls.items():
            med = {k: v["median"] for k, v in f.items()}
            ratio = f"{med['ftengine_speedup_time_to_target']:.2f}x" if "ftengine_speedup_time_to_target" in med else ""
            to = f"{med['time_to_target']:.1f}" if "time_to_target" in med else "never"
            lines.append(f"{recipe:<20}{NAMES.get(impl, impl):<15}{med['epoch_train_seconds']:>9.2f}{to:>11}"
                         f"{med['total_seconds']:>9.1f}{med['final_accuracy']:>11.4f}{med['peak_rss_mb']:>8.0f}"
                         f"{ratio:>16}")
    lines += _stage_lines(result["summary"])
    return "\n".join(lines)


def stage_text(figures: dict[str, Any]) -> str:
    """One implementation's per-stage medians from its summary ``figures``: epoch seconds and training tokens per
    second when recorded ("stage0 1.23 s/epoch, 4,567 tokens/s; stage1 ..."; empty without stage figures)."""
    stages = sorted(k.removesuffix("_epoch_seconds") for k in figures if k.endswith("_epoch_seconds")
                    and k.startswith("stage"))
    return "; ".join(f"{s} {figures[s + '_epoch_seconds']['median']:.2f} s/epoch" + (
        f", {figures[s + '_tokens_per_second']['median']:,.0f} tokens/s" if s + "_tokens_per_second" in figures
        else "") for s in stages)


def _stage_lines(summary: dict[str, Any]) -> list[str]:
    """Per recipe and implementation: the stage figures (when recorded)."""
    return [f"  {recipe} / {NAMES.get(impl, impl)}: {text}" for recipe, impls in summary.items()
            for impl, f in impls.items() if (text := stage_text(f))]


def plot(result: dict[str, Any], out: Path) -> None:
    """Validation accuracy against wall seconds, one panel per recipe, first repeat of each implementation."""
    plt = pyplot()

    recipes = list(result["summary"])
    fig, axes = plt.subplots(1, len(recipes), figsize=(5.5 * len(recipes), 4), squeeze=False)
    for ax, recipe in zip(axes[0], recipes, strict=True):
        for run in (r for r in result["runs"] if r["recipe"] == recipe and r["repeat"] == 0):
            xs, ys = [e["wall"] for e in run["epochs"]], [e["val_accuracy"] for e in run["epochs"]]
            ax.plot(xs, ys, marker="o", label=f"{NAMES.get(run['impl'], run['impl'])} ({run['total_seconds']:.0f} s)")
            if run.get("target") is not None:
                ax.axhline(run["target"], color="grey", lw=0.6, ls="--")
        ax.set(title=recipe.replace("_", " "), xlabel="seconds since process start", ylabel="validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    env, settings = result["environment"], result["settings"]
    # Files written before the suites shared one environment record name these cpu_model and date_utc.
    cpu, date = env.get("cpu", env.get("cpu_model")), env.get("date", env.get("date_utc", ""))
    save_chart(fig, out, (
        f"MiniLM-L6 on {settings['train']}/{settings['validation']} tweets, {settings['threads']} threads, "
        f"{cpu} ({date[:10]}; dashed: target)"))
