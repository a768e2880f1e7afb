"""Table and chart of a ddp bench result (`ftengine bench ddp`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftengine.bench.kit import pyplot, save_chart

MIB = 2**20


def table(result: dict[str, Any]) -> str:
    """Per variant and stage: median ms/step [min-max], gradient MiB all-reduced per step, trainable MiB; then the
    replica check and the fill measurement when it ran."""
    head = f"{'variant':<12}{'stage':<7}{'ms/step':>9}{'[min-max]':>17}{'grad MiB/step':>15}{'trainable MiB':>15}"
    out = [head, "-" * len(head)]
    for name, v in result["variants"].items():
        for s in v["stages"]:
            lo, hi = s["step_ms"]["min"], s["step_ms"]["max"]
            expected = f"{s['expected_bytes'] / MIB:.3f}" if s["expected_bytes"] is not None else "-"
            out.append(f"{name:<12}{s['name']:<7}{s['median_ms']:>9.1f}{f'[{lo:.1f}-{hi:.1f}]':>17}"
                       f"{s['grad_bytes_per_step'] / MIB:>15.3f}{expected:>15}")
    model = result["model"]
    out.append(f"model: {model['parameters']:,} parameters, {model['param_bytes'] / MIB:.1f} MiB; replicas equal at "
               "the end: " + ", ".join(f"{n} {v['replicas_equal']}" for n, v in result["variants"].items()))
    fill = result.get("fill")
    if fill:
        out.append(f"cache fill of {fill['examples']} examples: {fill['ranks']} ranks x 1 thread "
                   f"{fill['parallel_seconds']:.2f} s vs 1 rank x {fill['ranks']} threads {fill['single_seconds']:.2f}"
                   f" s ({fill['ratio']:.2f}x); examples computed per rank {fill['examples_per_rank']}")
    return "\n".join(out)


def plot(result: dict[str, Any], out: Path) -> None:
    """Median step ms per stage and variant (whiskers min-max), gradient MiB per step (log scale), and the cache
    fill's seconds, N ranks vs one process, when it ran."""
    plt = pyplot()
    variants = result["variants"]
    stages = [s["name"] for s in next(iter(variants.values()))["stages"]]
    fill = result.get("fill")
    fig, axes = plt.subplots(1, 3 if fill else 2, figsize=(13 if fill else 10, 4),
                             width_ratios=[3, 3, 1.4] if fill else [1, 1])
    ax_t, ax_b = axes[0], axes[1]
    width = 0.8 / len(variants)
    for k, (name, v) in enumerate(variants.items()):
        xs = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(stages))]
        med = [s["median_ms"] for s in v["stages"]]
        err = [[m - s["step_ms"]["min"] for m, s in zip(med, v["stages"], strict=True)],
               [s["step_ms"]["max"] - m for m, s in zip(med, v["stages"], strict=True)]]
        ax_t.bar(xs, med, width, yerr=err, capsize=3, label=name)
        ax_b.bar(xs, [max(s["grad_bytes_per_step"], 1) / MIB for s in v["stages"]], width, label=name)
    ax_t.set(ylabel="ms per step (median, min-max)", title="step time")
    ax_b.set(ylabel="MiB all-reduced per rank and step", yscale="log", title="gradient communication")
    for ax in (ax_t, ax_b):
        ax.set_xticks(range(len(stages)), stages)
        ax.grid(axis="y", alpha=0.3)
    ax_t.legend(fontsize=8)  # one legend: the same colours in both panels
    if fill:
        ax = axes[2]
        labels = [f"{fill['ranks']} ranks\nx 1 thread", f"1 process\nx {fill['ranks']} threads"]
        ax.bar([0, 1], [fill["parallel_seconds"], fill["single_seconds"]], 0.6, color=["tab:blue", "tab:gray"])
        ax.set_xticks([0, 1], labels, fontsize=8)
        ax.set(ylabel="seconds", title=f"cache fill, {fill['examples']} examples\n(ratio {fill['ratio']:.2f})")
        ax.grid(axis="y", alpha=0.3)
    env, settings, world = result["environment"], result["settings"], result["world"]
    save_chart(fig, out, (
        f"{settings['source']}, global batch {settings['batch_size']} x {settings['max_length']} tokens, "
        f"{world['size']} ranks ({world['backend']}, {world['intra_op_threads_per_rank']} thread each), "
        f"{env['cpu']} ({result['created'][:10]})"))
