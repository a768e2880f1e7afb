"""Table and chart of a forgetting bench result (`ftengine bench forgetting`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftengine.bench.forgetting_methods import NAMES
from ftengine.bench.kit import pyplot, save_chart

PANELS = (("test_accuracy", "in distribution: test accuracy"), ("ood_accuracy", "out of distribution: accuracy"),
          ("ood_macro_f1", "out of distribution: macro-F1"), ("seconds", "wall seconds (start to trained)"))


def _pm(figures: dict[str, Any], key: str, scale: float = 1.0, digits: int = 4) -> str:
    """``mean +- std`` of one figure ("-" when it was not recorded)."""
    if key not in figures:
        return "-"
    f = figures[key]
    return f"{f['mean'] * scale:.{digits}f}+-{f['std'] * scale:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Mean +- std over seeds per method, then each method against full fine-tuning, then the targets."""
    head = (f"{'method':<13}{'val acc':>16}{'test acc':>16}{'test F1':>16}{'OOD acc':>16}{'OOD F1':>16}"
            f"{'seconds':>12}{'s/step':>12}{'RSS MB':>8}{'ckpt MB':>9}")
    lines = [head, "-" * len(head)]
    for method, f in result["summary"]["methods"].items():
        ckpt = f"{f['checkpoint_bytes']['mean'] / 2**20:.2f}" if "checkpoint_bytes" in f else "-"
        lines.append(f"{method:<13}{_pm(f, 'val_accuracy'):>16}{_pm(f, 'test_accuracy'):>16}"
                     f"{_pm(f, 'test_macro_f1'):>16}{_pm(f, 'ood_accuracy'):>16}{_pm(f, 'ood_macro_f1'):>16}"
                     f"{_pm(f, 'seconds', digits=0):>12}{_pm(f, 'step_seconds', digits=2):>12}"
                     f"{f['peak_rss_mb']['mean']:>8.0f}{ckpt:>9}")
    lines.append("")
    for tests in result["summary"]["vs_full_ft"].values():
        lines += [tests[k]["verdict"] for k in ("ood_accuracy", "ood_macro_f1")]
    lines += ["", *target_lines(result["summary"]["targets"])]
    return "\n".join(lines)


def target_lines(targets: dict[str, Any]) -> list[str]:
    """The issue's targets as measured, one line each."""
    out = []
    if (t := targets.get("lora_cached_step_vs_full_ft")) is not None:
        out.append(f"LoRA step on a cached prefix / full fine-tuning step: {t['ratio']:.2f}x (faster: {t['met']})")
    if (t := targets.get("lora_checkpoint_share_of_model")) is not None:
        out.append(f"LoRA adapter {100 * t['adapter']:.2f}% and checkpoint {100 * t['checkpoint']:.2f}% of the model's "
                   f"bytes (<= 5%: {t['met']})")
    if (t := targets.get("wise_ft_sweep_vs_epoch")) is not None:
        out.append(f"WiSE-FT sweep / one training epoch: {t['ratio']:.2f}x (less: {t['met']})")
    better = targets.get("beats_full_ft_ood", [])
    out.append("beats full fine-tuning out of distribution beyond the seed noise: "
               + (", ".join(better) if better else "none"))
    return out


def plot(result: dict[str, Any], out: Path) -> None:
    """Bars of the mean per method with the seed spread (std whiskers, each seed a dot), one panel per figure."""
    plt = pyplot()
    methods = result["summary"]["methods"]
    names = list(methods)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], PANELS, strict=True):
        xs = range(len(names))
        means = [methods[m].get(key, {}).get("mean", 0.0) for m in names]
        stds = [methods[m].get(key, {}).get("std", 0.0) for m in names]
        ax.bar(xs, means, yerr=stds, capsize=3, color="tab:blue", alpha=0.6)
        for x, m in zip(xs, names, strict=True):
            values = methods[m].get(key, {}).get("values", [])
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
        if key != "seconds":
            low = min((v for m in names for v in methods[m].get(key, {}).get("values", [])), default=0.0)
            ax.set_ylim(max(0.0, low - 0.1), None)
        ax.set_xticks(list(xs), [NAMES.get(m, m).split(" (")[0] if m != "lora_cached" else "LoRA cached"
                                 for m in names], rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    env, settings = result["environment"], result["settings"]
    load = f"{env['loadavg'][0]:.1f}" if env.get("loadavg") else "?"
    model = "a tiny random BERT" if settings.get("quick") and not settings.get("model_dir") else "MiniLM-L6"
    save_chart(fig, out, (
        f"{model} on {settings['train']} tweets, {len(settings['seeds'])} seed(s); OOD: {result['ood']['examples']} "
        f"Amazon review sentences (VADER); {env.get('cpu')}, {settings['threads']} threads, load {load}, "
        f"{env.get('date', '')[:10]}"))
