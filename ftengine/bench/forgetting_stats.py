"""The forgetting bench's summary: mean +- std over seeds, each method against full fine-tuning, the targets.

"Claimable" follows one stated rule: Welch's t-test (unequal variances) on the per-seed values of the method and
of full fine-tuning, two-sided p < 0.05, with at least two seeds on each side. With one seed there is no noise
estimate, so nothing is claimable; the verdict then says so instead of ranking one draw.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

BASELINE = "full_ft"
ALPHA = 0.05
METRICS = ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "ood_accuracy", "ood_macro_f1",
           "seconds", "ood_eval_seconds", "peak_rss_mb", "epoch_seconds", "step_seconds", "model_bytes",
           "checkpoint_bytes", "resume_checkpoint_bytes", "adapter_bytes", "wise_ft_seconds", "wise_ft_alpha")
COMPARED = ("ood_accuracy", "ood_macro_f1", "test_accuracy", "test_macro_f1")


def welch(a: list[float], b: list[float]) -> dict[str, float | bool | None]:
    """Difference of means ``mean(a) - mean(b)``, Welch's t, its degrees of freedom, two-sided p and the verdict.

    Identical values on both sides (zero variance) give p 1.0 when the means are equal and 0.0 otherwise.
    """
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "t": None, "df": None, "p": None, "claimable": False}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        p = 1.0 if diff == 0 else 0.0
        return {"diff": diff, "t": None, "df": None, "p": p, "claimable": p < ALPHA}
    from scipy.stats import t as student_t  # scipy comes with scikit-learn (the examples extra)

    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = float(2 * student_t.sf(abs(t), df))
    return {"diff": diff, "t": t, "df": df, "p": p, "claimable": p < ALPHA}


def verdict(method: str, metric: str, test: dict[str, Any]) -> str:
    """One sentence on ``method`` vs full fine-tuning for ``metric``."""
    points = f"{100 * test['diff']:+.1f} points"
    if test["p"] is None:
        return f"{method}: {metric} {points} vs full_ft from one seed: no difference can be claimed"
    if not test["claimable"]:
        return f"{method}: {metric} {points} vs full_ft (p {test['p']:.2f}): no difference can be claimed"
    side = "better" if test["diff"] > 0 else "worse"
    return f"{method}: {metric} {points} vs full_ft (p {test['p']:.3f}): {side} beyond the seed noise"


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


def per_run_figures(run: dict[str, Any]) -> dict[str, float]:
    """A run's scalar figures, with its last stage's median epoch and step seconds (the stage whose backbone or
    adapters train; LP-FT's head epochs come first)."""
    out = {k: run[k] for k in METRICS if isinstance(run.get(k), (int, float)) and not isinstance(run.get(k), bool)}
    last = run["epochs"][-1]["stage"]
    seconds = [e["train_seconds"] for e in run["epochs"] if e["stage"] == last]
    out["epoch_seconds"] = statistics.median(seconds)
    if run.get("steps_per_epoch"):
        out["step_seconds"] = out["epoch_seconds"] / run["steps_per_epoch"]
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: stats of every figure over seeds; per method vs full fine-tuning: Welch tests and verdicts;
    the issue's targets as measured."""
    methods = list(dict.fromkeys(r["method"] for r in runs))
    figures = {m: [per_run_figures(r) for r in runs if r["method"] == m] for m in methods}
    per_method = {m: {k: _stats([f[k] for f in fs if k in f]) for k in METRICS if any(k in f for f in fs)}
                  for m, fs in figures.items()}
    versus: dict[str, Any] = {}
    if BASELINE in per_method:
        for m in methods:
            if m == BASELINE:
                continue
            versus[m] = {}
            for k in COMPARED:
                test = welch(per_method[m][k]["values"], per_method[BASELINE][k]["values"])
                versus[m][k] = test | {"verdict": verdict(m, k, test)}
    return {"methods": per_method, "vs_full_ft": versus, "targets": targets(per_method, versus)}


def targets(per_method: dict[str, Any], versus: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figures behind it (None where a method needed for it did not run)."""
    def mean(method: str, key: str) -> float | None:
        return per_method.get(method, {}).get(key, {}).get("mean")

    out: dict[str, Any] = {}
    ft_step, lora_step = mean(BASELINE, "step_seconds"), mean("lora_cached", "step_seconds")
    if ft_step and lora_step:
        out["lora_cached_step_vs_full_ft"] = {"ratio": lora_step / ft_step, "met": lora_step < ft_step}
    adapter, model = mean("lora_cached", "adapter_bytes"), mean("lora_cached", "model_bytes")
    checkpoint = mean("lora_cached", "checkpoint_bytes")
    model = model or next((v["model_bytes"]["mean"] for v in per_method.values() if "model_bytes" in v), None)
    if adapter and checkpoint and model:
        out["lora_checkpoint_share_of_model"] = {"adapter": adapter / model, "checkpoint": checkpoint / model,
                                                 "met": max(adapter, checkpoint) / model <= 0.05}
    sweep, epoch = mean("wise_ft", "wise_ft_seconds"), mean("wise_ft", "epoch_seconds")
    if sweep and epoch:
        out["wise_ft_sweep_vs_epoch"] = {"ratio": sweep / epoch, "met": sweep < epoch}
    better = [m for m, tests in versus.items() if any(tests[k]["claimable"] and tests[k]["diff"] > 0
                                                      for k in ("ood_accuracy", "ood_macro_f1"))]
    out["beats_full_ft_ood"] = better
    return out
