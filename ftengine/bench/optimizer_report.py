"""Table and chart of an optimizer bench result (`ftengine bench optimizer`, bench/optimizer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftengine.bench.kit import pyplot, save_chart


def _cases(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["case"] for r in result["results"]))


def _impls(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["impl"] for r in result["results"]))


def table(result: dict[str, Any]) -> str:
    """One line per case and implementation: median ms/step [min-max over reps], GB/s, share of copy, vs fused."""
    head = (f"{'case':<34}{'impl':<16}{'ms/step':>9}{'min-max':>15}{'GB/s':>7}{'x copy':>8}"
            f"{'vs torch fused':>16}  validation")
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        spread = f"{r['ms_min']:.1f}-{r.get('ms_max', max(r['ms_all'])):.1f}"
        speedup = f"{r['speedup_vs_torch_fused']:.2f}x" if r.get("speedup_vs_torch_fused") else "-"
        lines.append(f"{r['case']:<34}{r['impl']:<16}{r['ms_median']:>9.1f}{spread:>15}{r['gbps']:>7.1f}"
                     f"{r['ratio_to_copy']:>8.2f}{speedup:>16}  {r['validation'].split(' (')[0]}")
    return "\n".join(lines)


def plot(result: dict[str, Any], out: Path) -> None:
    """Two panels over the cases: ms/step per implementation (log scale, whiskers min-max over reps), and each
    implementation's speedup over torch.optim.AdamW(fused=True) in the same run."""
    plt = pyplot()
    from matplotlib import ticker

    cases, impls = _cases(result), _impls(result)
    rows = {(r["case"], r["impl"]): r for r in result["results"]}
    width = 0.8 / len(impls)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(max(6.0, 0.6 * len(cases) + 2), 22), 7), sharex=True)
    for k, impl in enumerate(impls):
        xs = [i + (k - (len(impls) - 1) / 2) * width for i, c in enumerate(cases) if (c, impl) in rows]
        mine = [rows[c, impl] for c in cases if (c, impl) in rows]
        med = [r["ms_median"] for r in mine]
        err = [[m - r["ms_min"] for m, r in zip(med, mine, strict=True)],
               [r.get("ms_max", max(r["ms_all"])) - m for m, r in zip(med, mine, strict=True)]]
        top.bar(xs, med, width, yerr=err, capsize=2, label=impl)
        fast = [(x, r["speedup_vs_torch_fused"]) for x, r in zip(xs, mine, strict=True)
                if r.get("speedup_vs_torch_fused")]
        bottom.bar([x for x, _ in fast], [s - 1 for _, s in fast], width, bottom=1.0, label=impl)  # up or down from 1x
    top.set(yscale="log", ylabel="ms / step (median, min-max)")
    bottom.axhline(1.0, color="grey", lw=0.8, ls="--")
    bottom.set_yscale("log")
    low, high = bottom.get_ylim()
    bottom.set(ylim=(min(low, 0.5), max(high, 2.0)), ylabel="speedup vs torch fused (same run)")
    bottom.set_xticks(range(len(cases)), cases, fontsize=7, rotation=35, ha="right")
    for ax, unit in ((top, ""), (bottom, "x")):
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _, unit=unit: f"{v:g}{unit}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(axis="y", alpha=0.3)
    top.legend(fontsize=7, ncol=min(len(impls), 5))
    env, settings = result["environment"], result["settings"]
    save_chart(fig, out, (
        f"AdamW step, {env['device_name']} ({env['device']}), {env['torch_threads']} threads, "
        f"{settings['reps']} reps ({env['date'][:10]})"))
