"""Table and chart of a cache bench result (`ftengine bench cache`, bench/bench_cache.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ftengine.bench.kit import pyplot, save_chart


def _timed(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scenarios with repeated uncached/cached epoch pairs (gradual_3stage has one epoch per stage instead)."""
    return {k: v for k, v in result["scenarios"].items() if "uncached_epoch_seconds" in v}


def _mmm(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def table(result: dict[str, Any]) -> str:
    """Medians per scenario with [min-max] over the repeats, the same-run speedup and the derived bound."""
    head = (f"{'scenario':<20}{'uncached s':>10}{'[min-max]':>14}{'filling s':>11}{'cached s':>10}{'[min-max]':>14}"
            f"{'speedup':>10}{'[per pair]':>17}{'bound':>8}{'of bound':>10}")
    lines = [head, "-" * len(head)]
    for name, r in _timed(result).items():
        u_lo, u_med, u_hi = _mmm(r["uncached_epoch_seconds"])
        c_lo, c_med, c_hi = _mmm(r["cached_epoch_seconds"])
        p_lo, _, p_hi = _mmm(r["ratios_per_pair"])
        lines.append(f"{name:<20}{u_med:>10.3f}{f'[{u_lo:.3f}-{u_hi:.3f}]':>14}{r['filling_epoch_seconds']:>11.3f}"
                     f"{c_med:>10.3f}{f'[{c_lo:.3f}-{c_hi:.3f}]':>14}{r['speedup']:>9.2f}x"
                     f"{f'[{p_lo:.2f}-{p_hi:.2f}x]':>17}{r['derived_bound']:>7.2f}x"
                     f"{100 * r['fraction_of_bound']:>9.0f}%")
    for name, r in result["scenarios"].items():
        if "stage_epoch_seconds" in r:
            stages = ", ".join(f"{s:.3f}" for s in r["stage_epoch_seconds"])
            passes = ", ".join(f"{b}: {n}" for b, n in r["forward_passes_per_boundary"].items())
            lines.append(f"{name:<20}stage epochs {stages} s (cached where filled); fill {r['fill_seconds']:.2f} s; "
                         f"frozen forward passes per boundary {passes}")
    return "\n".join(lines)


def plot(result: dict[str, Any], out: Path) -> None:
    """Epoch seconds uncached / filling / cached per scenario (log scale, whiskers min-max over repeats); a second
    panel with the epoch seconds of each stage when gradual_3stage ran."""
    plt = pyplot()
    from matplotlib import ticker

    timed = _timed(result)
    staged = {k: v for k, v in result["scenarios"].items() if "stage_epoch_seconds" in v}
    panels = int(bool(timed)) + len(staged)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.5 + 1.5 * len(timed) + 3 * len(staged), 4),
                             squeeze=False, width_ratios=[max(len(timed), 1)] * bool(timed) + [1.2] * len(staged))
    axes = list(axes[0])
    if timed:
        ax = axes.pop(0)
        names = list(timed)
        bars = (("uncached", "uncached_epoch_seconds"), ("first cached epoch, incl. fill", None),
                ("cached", "cached_epoch_seconds"))
        for k, (label, key) in enumerate(bars):
            xs = [i + (k - 1) * 0.27 for i in range(len(names))]
            if key is None:
                ax.bar(xs, [timed[n]["filling_epoch_seconds"] for n in names], 0.27, label=label)
                continue
            lo, med, hi = zip(*(_mmm(timed[n][key]) for n in names), strict=True)
            ax.bar(xs, med, 0.27, yerr=[[m - a for m, a in zip(med, lo, strict=True)],
                                        [b - m for m, b in zip(med, hi, strict=True)]], capsize=3, label=label)
        for i, n in enumerate(names):
            ax.annotate(f"{timed[n]['speedup']:.1f}x", (i + 0.27, max(timed[n]["cached_epoch_seconds"])), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
        ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
        ax.set(yscale="log", ylabel="epoch seconds (median, min-max)", title="uncached vs cached epoch")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
        ax.grid(axis="y", alpha=0.3)
    for ax, (name, r) in zip(axes, staged.items(), strict=True):
        seconds = r["stage_epoch_seconds"]
        ax.bar(range(len(seconds)), seconds, 0.6, color="tab:green")
        ax.set_xticks(range(len(seconds)), [f"stage {i}\nboundary {b}" for i, b in enumerate(r["boundaries"])],
                      fontsize=8)
        ax.set(ylabel="epoch seconds", title=f"{name.replace('_', ' ')} (cached)")
        ax.grid(axis="y", alpha=0.3)
    env, settings = result["environment"], result["settings"]
    save_chart(fig, out, (
        f"MiniLM-L6, {settings['examples']} tweets, batch {settings['batch_size']}, {settings['dtype']} "
        f"cache, {env['cpu'] if env.get('gpu') is None else env['gpu']} ({env['device']}), "
        f"{env['torch_threads']} threads ({result['created'][:10]})"))
