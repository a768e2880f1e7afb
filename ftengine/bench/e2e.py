"""`ftengine bench e2e`: ftengine's run vs a plain PyTorch loop vs a Hugging Face Trainer run, end to end.

Each (recipe, implementation) runs in its own Python process, so peak RSS (`resource.getrusage`) is that
run's alone and no run inherits another's warm caches. Same model (bundled MiniLM-L6), same seeded data
split, same recipe, seed and thread count. Figures per run: wall time per epoch (training part), validation
accuracy after every epoch, seconds from process start to each validation (model and data loading
included), final accuracy and peak RSS. Time to target = the first validation at or above the target
(default: the lowest final accuracy of the implementations being compared, per recipe and repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ftengine.bench.kit import environment, progress

MARK = "E2E_RESULT "


def _worker(impl: str, recipe_name: str, train: int, validation: int, threads: int) -> dict[str, Any]:
    """One run in this process; returns its per-epoch records and peak RSS."""
    started = time.perf_counter()
    import torch

    from ftengine.bench.e2e_recipes import MODEL, RECIPES, load_texts
    from ftengine.spec.paths import resolve_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(threads)
    recipe = RECIPES[recipe_name]
    with tempfile.TemporaryDirectory(prefix="ftengine-e2e-") as tmp:
        spec = recipe.spec(train=train, validation=validation, threads=threads, out_dir=tmp)
        if impl == "ftengine":
            records, extra = _run_ftengine(spec, Path(tmp), started)
        else:
            from ftengine.bench import e2e_baselines

            data, model_dir, extra = load_texts(spec), str(resolve_path(MODEL)), {}
            records = (e2e_baselines.run_plain(recipe, data, model_dir, started) if impl == "plain"
                       else e2e_baselines.run_hf(recipe, data, model_dir, started, tmp))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {"impl": impl, "recipe": recipe_name, "epochs": records, "total_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_kb / 1024, **extra}


def _run_ftengine(spec: dict[str, Any], tmp: Path, started: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """run_spec on the recipe's spec; a thread stamps each metrics.jsonl row with the wall time it appeared.

    Also returns run_spec's own timings (load/train/total seconds) as `ftengine_metrics`.
    """
    import yaml

    from ftengine.runtime import run_spec

    path = tmp / f"{spec['output']['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    log = tmp / spec["output"]["name"] / "metrics.jsonl"
    stamps: list[float] = []
    done = threading.Event()

    def watch() -> None:  # rows are appended after each validation; 10 ms polling is far below epoch times
        while not done.is_set():
            if log.exists():
                stamps.extend([time.perf_counter() - started] * (log.read_text().count("\n") - len(stamps)))
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    result = run_spec(None, path, quiet=True)
    done.set()
    thread.join()
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    stamps += [time.perf_counter() - started] * (len(rows) - len(stamps))
    return [{"epoch": r["epoch"], "stage": r["stage_index"], "train_seconds": r["epoch_seconds"],
             "val_accuracy": r["val_accuracy"], "wall": stamps[i]} for i, r in enumerate(rows)], \
        {"ftengine_metrics": {k: v for k, v in result.metrics.items() if k.endswith("seconds")}}


def spawn_run(impl: str, recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """One (implementation, recipe) run in a fresh Python process (`args`: train, validation, threads)."""
    cmd = [sys.executable, "-m", "ftengine.bench.e2e", "--worker", impl, recipe, str(args.train),
           str(args.validation), str(args.threads)]
    root = str(Path(__file__).resolve().parents[2])  # the worker imports this checkout's ftengine, installed or not
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench e2e: {impl}/{recipe} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def _time_to(run: dict[str, Any], target: float) -> float | None:
    return next((e["wall"] for e in run["epochs"] if e["val_accuracy"] >= target - 1e-9), None)


def summarize(runs: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Per recipe and implementation: min/median/max of each figure, and ratios to ftengine from the same repeat."""
    out: dict[str, Any] = {}
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == recipe]
        for rep in dict.fromkeys(r["repeat"] for r in mine):
            same = [r for r in mine if r["repeat"] == rep]
            goal = target if target is not None else min(r["epochs"][-1]["val_accuracy"] for r in same)
            for r in same:
                r["target"], r["time_to_target"] = goal, _time_to(r, goal)
            ours = next((r for r in same if r["impl"] == "ftengine"), None)
            for r in same:
                if ours and r is not ours and ours["time_to_target"] and r["time_to_target"]:
                    r["ftengine_speedup_time_to_target"] = r["time_to_target"] / ours["time_to_target"]
        out[recipe] = {}
        for impl in dict.fromkeys(r["impl"] for r in mine):
            rs = [r for r in mine if r["impl"] == impl]
            figures = {"epoch_train_seconds": [statistics.median(e["train_seconds"] for e in r["epochs"]) for r in rs],
                       "time_to_target": [r["time_to_target"] for r in rs if r["time_to_target"] is not None],
                       "total_seconds": [r["total_seconds"] for r in rs],
                       "final_accuracy": [r["epochs"][-1]["val_accuracy"] for r in rs],
                       "peak_rss_mb": [r["peak_rss_mb"] for r in rs],
                       "ftengine_speedup_time_to_target": [r["ftengine_speedup_time_to_target"] for r in rs
                                                           if "ftengine_speedup_time_to_target" in r]}
            out[recipe][impl] = {k: {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}
                                 for k, v in figures.items() if v}
    return out


def run_e2e_bench(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run every (repeat, recipe, implementation) in a fresh process; return settings, runs and summary."""
    recipes, impls = args.recipes.split(","), args.impls.split(",")
    runs: list[dict[str, Any]] = []
    total = args.repeats * len(recipes) * len(impls)
    with progress(total, "e2e", log, unit="run") as bar:
        for rep in range(args.repeats):
            for recipe in recipes:
                for impl in impls:
                    bar.start(f"{recipe} / {impl}")
                    bar.log(f"[{len(runs) + 1}/{total}] {recipe} / {impl} (repeat {rep + 1}) ...")
                    run = spawn_run(impl, recipe, args) | {"repeat": rep}
                    last = run["epochs"][-1]
                    bar.log(f"    final acc {last['val_accuracy']:.4f}, total {run['total_seconds']:.1f} s, "
                                 f"peak RSS {run['peak_rss_mb']:.0f} MB")
                    bar.done()
                    runs.append(run)
                    if getattr(args, "partial", None):  # a long sweep on a busy machine keeps what it has measured
                        with open(args.partial, "a") as f:
                            f.write(json.dumps(run) + "\n")
    # Taken at the end (the load average: how busy the shared machine was); the runs use args.threads threads.
    env = environment("cpu", threads=args.threads)
    keys = ("recipes", "impls", "train", "validation", "repeats", "threads", "target")
    settings = {k: getattr(args, k) for k in keys}
    return {"suite": "e2e", "environment": env, "settings": settings,
            "summary": summarize(runs, args.target), "runs": runs}


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        impl, recipe, train, validation, threads = sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
        print(MARK + json.dumps(_worker(impl, recipe, train, validation, threads)), flush=True)
    else:
        sys.exit("usage: python -m ftengine.bench.e2e --worker IMPL RECIPE TRAIN VALIDATION THREADS")
