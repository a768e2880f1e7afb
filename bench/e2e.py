"""End-to-end bench: ftengine vs a plain PyTorch loop vs HF Trainer (same model, data, recipe, seed).

    python bench/e2e.py                                   # feature extraction + gradual unfreezing, 800/400 tweets
    python bench/e2e.py --recipes full_finetune --train 400 --validation 200
    python bench/e2e.py --plot bench/results/e2e-cpu-20261123-111500.json   # redraw a chart

Writes bench/results/e2e-cpu-<time>.json and a .png beside it; prints one table row per (recipe, implementation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ftengine.runtime.e2e_bench import add_arguments, run_e2e_bench

NAMES = {"ftengine": "ftengine", "plain": "plain PyTorch", "hf": "HF Trainer"}


def table(result: dict[str, Any]) -> str:
    """Medians per recipe and implementation, with the same-run time-to-target ratio to ftengine."""
    head = f"{'recipe':<20}{'impl':<15}{'s/epoch':>9}{'to target':>11}{'total s':>9}{'final acc':>11}{'RSS MB':>8}{'vs ftengine':>13}"
    lines = [head, "-" * len(head)]
    for recipe, impls in result["summary"].items():
        for impl, f in impls.items():
            med = {k: v["median"] for k, v in f.items()}
            ratio = f"{med['ftengine_speedup_time_to_target']:.1f}x slower" if "ftengine_speedup_time_to_target" in med else ""
            to = f"{med['time_to_target']:.1f}" if "time_to_target" in med else "never"
            lines.append(f"{recipe:<20}{NAMES.get(impl, impl):<15}{med['epoch_train_seconds']:>9.2f}{to:>11}"
                         f"{med['total_seconds']:>9.1f}{med['final_accuracy']:>11.4f}{med['peak_rss_mb']:>8.0f}{ratio:>13}")
    return "\n".join(lines)


def plot(result: dict[str, Any], out: Path) -> None:
    """Validation accuracy against wall seconds, one panel per recipe, first repeat of each implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.suptitle(f"MiniLM-L6 on {settings['train']}/{settings['validation']} tweets, {env['threads']} threads, "
                 f"{env['cpu_model']} ({env['date_utc'][:10]}; dashed: target)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(train=800, validation=400)
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/e2e-cpu-<time>.json)")
    parser.add_argument("--plot", type=Path, default=None, help="only redraw the chart and table of this result JSON")
    args = parser.parse_args(argv)
    if args.plot:
        result, out = json.loads(args.plot.read_text()), args.plot
    else:
        result = run_e2e_bench(args, log=lambda line: print(line, file=sys.stderr, flush=True))
        out = args.out or Path(__file__).parent / "results" / f"e2e-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result))
    print(f"wrote {out} and {out.with_suffix('.png').name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
