"""`ftengine bench e2e`: ftengine's run vs a plain PyTorch loop vs a Hugging Face Trainer run, end to end.

Each (recipe, implementation) runs in its own Python process, so peak RSS (`resource.getrusage`) is that
run's alone and no run inherits another's warm caches. Same model (bundled MiniLM-L6), same seeded data
split, same recipe, seed and thread count. Figures per run: wall time per epoch (training part), validation
accuracy after every epoch, seconds from process start to each validation (model and data loading
included), final accuracy, peak RSS (and peak GPU memory on CUDA; on Linux also where the resident memory was near
the peak: heap, anonymous mappings, mapped files, libraries), and per stage the median epoch seconds and
training tokens per second (the training split's real tokens, padding not counted, over one epoch's time). Time
to target = the first validation at or above the target (default: the lowest final accuracy of the
implementations being compared, per recipe and repeat).

`--device cuda --precision bf16 --random-init` runs the same comparison on a GPU without the weights: one random
initialisation of the model's shape (written once, loaded by every run) replaces the pretrained weights.
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

from ftengine.bench.e2e_recipes import MODEL, RECIPES
from ftengine.bench.kit import environment, progress
from ftengine.bench.memory import PeakMemory
from ftengine.bench.random_init import model_source

MARK = "E2E_RESULT "


def _worker(impl: str, recipe_name: str, train: int, validation: int, threads: int, device: str = "cpu",
            precision: str = "auto", model_dir: str | None = None) -> dict[str, Any]:
    """One run in this process; returns its per-epoch records and peak RSS (and peak GPU memory on CUDA)."""
    started = time.perf_counter()
    import torch

    from ftengine.bench.e2e_recipes import SPEC_PREFIX, load_texts, shipped_spec
    from ftengine.spec.paths import resolve_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="ftengine-e2e-") as tmp, PeakMemory() as memory:
        if recipe_name.startswith(SPEC_PREFIX):  # an example spec as it ships: ftengine only
            records, extra = run_ftengine(shipped_spec(recipe_name, threads=threads, out_dir=tmp), Path(tmp), started)
        else:
            recipe = RECIPES[recipe_name]
            spec = recipe.spec(train=train, validation=validation, threads=threads, out_dir=tmp, device=device,
                               precision=precision, source=model_dir or MODEL)
            if impl == "ftengine":
                records, extra = run_ftengine(spec, Path(tmp), started)
            else:
                from ftengine.bench import e2e_baselines

                data, location, extra = load_texts(spec), str(resolve_path(model_dir or MODEL)), {}
                records = (e2e_baselines.run_plain(recipe, data, location, started, device, precision)
                           if impl == "plain" else
                           e2e_baselines.run_hf(recipe, data, location, started, tmp, device, precision))
    if memory.breakdown is not None:  # resident memory by kind near the peak (Linux)
        extra["peak_memory_by_kind"] = memory.breakdown
    return _result(impl, recipe_name, records, started, device, extra)


def _result(impl: str, recipe: str, records: list[dict[str, Any]], started: float, device: str,
            extra: dict[str, Any]) -> dict[str, Any]:
    """One run's record: its epochs, total seconds and peak RSS (and peak GPU memory on CUDA)."""
    import torch

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    if device.startswith("cuda"):
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {"impl": impl, "recipe": recipe, "epochs": records, "total_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_kb / 1024, **extra}


def run_ftengine(spec: dict[str, Any], tmp: Path, started: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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


def spawn_run(impl: str, recipe: str, args: argparse.Namespace, model_dir: str | None = None) -> dict[str, Any]:
    """One (implementation, recipe) run in a fresh Python process (`args`: train, validation, threads, device,
    precision; ``model_dir``: the model every run loads, default the bundled MiniLM)."""
    cmd = [sys.executable, "-m", "ftengine.bench.e2e", "--worker", impl, recipe, str(args.train),
           str(args.validation), str(args.threads), getattr(args, "device", "cpu"),
           getattr(args, "precision", "auto"), model_dir or MODEL]
    root = str(Path(__file__).resolve().parents[2])  # the worker imports this checkout's ftengine, installed or not
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench e2e: {impl}/{recipe} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def _time_to(run: dict[str, Any], target: float) -> float | None:
    return next((e["wall"] for e in run["epochs"] if e["val_accuracy"] >= target - 1e-9), None)


def _stage_figures(run: dict[str, Any], train_tokens: int | None) -> dict[str, float]:
    """Per stage of one run: median epoch seconds and (with ``train_tokens``) training tokens per second."""
    out: dict[str, float] = {}
    for stage in dict.fromkeys(e.get("stage", 0) for e in run["epochs"]):
        seconds = statistics.median(e["train_seconds"] for e in run["epochs"] if e.get("stage", 0) == stage)
        out[f"stage{stage}_epoch_seconds"] = seconds
        if train_tokens and seconds > 0:
            out[f"stage{stage}_tokens_per_second"] = train_tokens / seconds
    return out


def summarize(runs: list[dict[str, Any]], target: float | None, train_tokens: int | None = None) -> dict[str, Any]:
    """Per recipe and implementation: min/median/max of each figure, and ratios to ftengine from the same repeat.

    ``train_tokens``: real tokens in one epoch of the training split (for the per-stage tokens per second).
    """
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
                       "peak_gpu_mb": [r["peak_gpu_mb"] for r in rs if "peak_gpu_mb" in r],
                       "ftengine_speedup_time_to_target": [r["ftengine_speedup_time_to_target"] for r in rs
                                                           if "ftengine_speedup_time_to_target" in r]}
            stages = [_stage_figures(r, train_tokens) for r in rs]
            for key in dict.fromkeys(k for f in stages for k in f):
                figures[key] = [f[key] for f in stages if key in f]
            out[recipe][impl] = {k: {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}
                                 for k, v in figures.items() if v}
    return out


def train_tokens(recipe: str, args: argparse.Namespace, model_dir: str) -> int:
    """Real tokens (padding not counted, cut at max_length) in one epoch of the training split: the work every
    implementation does per epoch, whatever its padding."""
    from transformers import AutoTokenizer

    from ftengine.bench.e2e_recipes import load_texts
    from ftengine.spec.paths import resolve_path

    spec = RECIPES[recipe].spec(train=args.train, validation=args.validation, threads=args.threads, out_dir=".")
    texts, _ = load_texts(spec).split("train")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_path(model_dir)))
    ids = tokenizer(texts, truncation=True, max_length=RECIPES[recipe].max_length)["input_ids"]
    return sum(len(x) for x in ids)


def run_e2e_bench(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run every (repeat, recipe, implementation) in a fresh process; return settings, runs and summary."""
    with tempfile.TemporaryDirectory(prefix="ftengine-e2e-model-") as tmp:
        # --random-init: one initialisation, loaded by every run (the same start for all)
        model_dir = model_source(getattr(args, "model_dir", None), getattr(args, "random_init", False),
                                 Path(tmp) / "model")
        if not model_dir.startswith("pkg:"):  # the ftengine run reads it from a spec in another folder
            model_dir = str(Path(model_dir).resolve())
        return _run_all(args, log, model_dir)


def _run_all(args: argparse.Namespace, log: Any, model_dir: str) -> dict[str, Any]:
    recipes, impls = args.recipes.split(","), args.impls.split(",")
    runs: list[dict[str, Any]] = []
    total = args.repeats * len(recipes) * len(impls)
    with progress(total, "e2e", log, unit="run") as bar:
        for rep in range(args.repeats):
            for recipe in recipes:
                for impl in impls:
                    bar.start(f"{recipe} / {impl}")
                    bar.log(f"[{len(runs) + 1}/{total}] {recipe} / {impl} (repeat {rep + 1}) ...")
                    run = spawn_run(impl, recipe, args, model_dir) | {"repeat": rep}
                    last = run["epochs"][-1]
                    kinds = run.get("peak_memory_by_kind")
                    where = (f" (near it: heap {kinds['heap_mb']:.0f}, anonymous {kinds['anonymous_mb']:.0f}, "
                             f"files {kinds['files_mb']:.0f}, libraries {kinds['libraries_mb']:.0f})") if kinds else ""
                    bar.log(f"    final acc {last['val_accuracy']:.4f}, total {run['total_seconds']:.1f} s, "
                            f"peak RSS {run['peak_rss_mb']:.0f} MB{where}")
                    bar.done()
                    runs.append(run)
                    if getattr(args, "partial", None):  # a long sweep on a busy machine keeps what it has measured
                        with open(args.partial, "a") as f:
                            f.write(json.dumps(run) + "\n")
    # Recipes share the data section, so one count serves all (the split depends on train/validation only).
    tokens = train_tokens(recipes[0], args, model_dir)
    # Taken at the end (the load average: how busy the shared machine was); the runs use args.threads threads.
    env = environment(getattr(args, "device", "cpu"), threads=args.threads)
    keys = ("recipes", "impls", "train", "validation", "repeats", "threads", "target", "device", "precision",
            "model_dir", "random_init")
    settings = {k: getattr(args, k, None) for k in keys} | {"train_tokens": tokens}
    return {"suite": "e2e", "environment": env, "settings": settings,
            "summary": summarize(runs, args.target, tokens), "runs": runs}


if __name__ == "__main__":
    if len(sys.argv) in (7, 10) and sys.argv[1] == "--worker":
        impl, recipe, train, validation, threads = sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
        device, precision, model = sys.argv[7:10] if len(sys.argv) == 10 else ("cpu", "auto", None)
        print(MARK + json.dumps(_worker(impl, recipe, train, validation, threads, device, precision, model)),
              flush=True)
    else:
        sys.exit("usage: python -m ftengine.bench.e2e --worker IMPL RECIPE TRAIN VALIDATION THREADS "
                 "[DEVICE PRECISION MODEL_DIR]")
