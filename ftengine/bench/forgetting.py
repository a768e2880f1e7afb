"""`ftengine bench forgetting`: which fine-tuning method keeps what MiniLM knows, in and out of distribution.

Six methods (`forgetting_methods.METHODS`: full fine-tuning, LP-FT, L2-SP, WiSE-FT, LoRA, LoRA on a cached
prefix), each a spec variant of one MiniLM-L6 base, each run for every seed as a real `run_spec` (the e2e bench's
`run_ftengine`) in a fresh Python process, so peak RSS is that run's alone. In distribution: the run's own
validation and test splits of the bundled tweets. Out of distribution: the finished run directory is scored with
`ftengine eval`'s `evaluate_run` on VADER's Amazon review sentences (`forgetting_data`), the same three labels.

Recorded per (method, seed): validation/test/OOD accuracy and macro-F1, wall seconds (process start to end of
training, and the OOD evaluation apart), median epoch and step seconds per stage, peak RSS after training,
checkpoint and adapter bytes next to the pretrained weights' bytes, and for WiSE-FT the sweep's seconds and the
chosen coefficient. The summary (`forgetting_stats`) gives mean +- std over seeds and, per method against full
fine-tuning, whether the difference out of distribution exceeds the seed noise (Welch's t-test, p < 0.05).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ftengine.bench import forgetting_data as ood
from ftengine.bench.forgetting_methods import METHODS, base_spec, method_spec
from ftengine.bench.forgetting_stats import summarize
from ftengine.bench.kit import environment, progress
from ftengine.bench.random_init import locate, model_source

MARK = "FORGETTING_RESULT "
QUICK = {"seeds": "0", "epochs": 1, "train": 32, "validation": 16, "test": 16, "max_length": 32, "ood_limit": 48}
"""--quick: one seed of a tiny random 4-layer BERT on a few dozen tweets and 48 OOD sentences, every run in one
process (a smoke test)."""


def _worker(config: dict[str, Any]) -> dict[str, Any]:
    """One method and seed in this process: train, measure, score the OOD file; returns the run's record."""
    started = time.perf_counter()
    import torch

    from ftengine.bench.e2e import run_ftengine
    from ftengine.runtime import evaluate_run

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(config["threads"])
    spec, folder = config["spec"], Path(config["dir"])
    epochs, extra = run_ftengine(spec, folder, started)
    trained = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; training's peak
    run_dir = folder / spec["output"]["name"]
    final = json.loads((run_dir / "run.json").read_text())["final"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    clock = time.perf_counter()
    report = evaluate_run(run_dir, config["ood_csv"], device="cpu")
    record = {"epochs": epochs, "seconds": trained, "ood_eval_seconds": time.perf_counter() - clock,
              "peak_rss_mb": peak_mb, "steps_per_epoch": rows[-1]["step"] / len(rows), **extra,
              **_sizes(run_dir, config["model_dir"])}
    record |= {k: final.get(k) for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")}
    record |= {"ood_accuracy": report["accuracy"], "ood_macro_f1": report["macro_f1"],
               "ood_examples": report["num_examples"]}
    if (run_dir / "wise_ft.json").is_file():
        sweep = json.loads((run_dir / "wise_ft.json").read_text())
        record |= {"wise_ft_alpha": sweep["best"], "wise_ft_seconds": sweep["seconds"], "wise_ft_rows": sweep["rows"]}
    return record


def _bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when it is missing)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _sizes(run_dir: Path, model_dir: str) -> dict[str, int]:
    """What a finished run keeps on disk, next to the pretrained weights it started from.

    `checkpoint_bytes`: the best checkpoint (the weights that trained, with the head); `resume_checkpoint_bytes`:
    the last one (also the optimizer state); `adapter_bytes`: the peft adapter folder (LoRA runs, else 0).
    """
    return {"model_bytes": sum(p.stat().st_size for p in locate(model_dir).glob("*.safetensors")),
            "checkpoint_bytes": _bytes(run_dir / "checkpoints" / "best" / "checkpoint.pt"),
            "resume_checkpoint_bytes": _bytes(run_dir / "checkpoints" / "last" / "checkpoint.pt"),
            "adapter_bytes": _bytes(run_dir / "model" / "adapter")}


def spawn(configs: list[dict[str, Any]], scratch: Path) -> list[dict[str, Any]]:
    """`_worker` for each config, one after the other in one fresh Python process (configs through a JSON file in
    ``scratch``); the suite starts one process per run, so each run's peak RSS is its own (--quick shares one)."""
    path = scratch / f"{configs[0]['spec']['output']['name']}-config.json"
    for config in configs:
        Path(config["dir"]).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(configs))
    root = str(Path(__file__).resolve().parents[2])  # the worker imports this checkout's ftengine, installed or not
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "ftengine.bench.forgetting", "--worker", str(path)],
                          capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or len(lines) != len(configs):
        raise RuntimeError(f"bench forgetting: {path.stem} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line[len(MARK):]) for line in lines]


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The effective settings: --quick's small sizes where the user gave none."""
    keys = ("methods", "seeds", "epochs", "train", "validation", "test", "max_length", "ood_limit", "threads",
            "l2sp_strength", "model_dir", "random_init", "quick")
    out = {k: getattr(args, k, None) for k in keys}
    if args.quick:
        out |= {k: v for k, v in QUICK.items() if getattr(args, k, None) is None}
    defaults = {"seeds": "0,1,2", "epochs": 2, "train": 1200, "validation": 600, "test": 400, "max_length": 64}
    out |= {k: v for k, v in defaults.items() if out.get(k) is None}
    out["methods"] = [m.strip() for m in str(out["methods"]).split(",") if m.strip()]
    out["seeds"] = [int(s) for s in str(out["seeds"]).split(",") if s.strip()]
    bad = [m for m in out["methods"] if m not in METHODS]
    if bad:
        from ftengine.errors import SpecError

        raise SpecError(f"bench forgetting: --methods: unknown {', '.join(bad)}; choose from {', '.join(METHODS)}")
    return out


def ood_sentences(limit: int | None) -> list[ood.Sentence]:
    """The deduplicated corpus, or ``limit`` sentences spread evenly over it (every class stays represented)."""
    sentences = ood.unique_texts(ood.read_sentences())
    if limit is None or limit >= len(sentences):
        return sentences
    return [sentences[i * len(sentences) // limit] for i in range(limit)]


def run_forgetting_bench(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run every (seed, method); return the environment, settings, OOD corpus facts, runs and summary.

    With ``args.summarize``, run nothing: the result is built from the runs a ``--partial`` file kept (a sweep
    stopped early on a busy machine keeps what it measured).
    """
    settings = settings_of(args)
    sentences = ood_sentences(settings["ood_limit"])  # first: a missing corpus stops the suite before any run
    if getattr(args, "summarize", None):
        lines = Path(args.summarize).read_text().splitlines()
        runs = [json.loads(line) for line in lines if line.strip()]
        layers = runs[0].get("layers", 6) if runs else 6
        settings["seeds"] = list(dict.fromkeys(r["seed"] for r in runs))
        settings["methods"] = list(dict.fromkeys(r["method"] for r in runs))
        return _result(settings | {"layers": layers, "from_partial": str(args.summarize)}, sentences, runs)
    with tempfile.TemporaryDirectory(prefix="ftengine-forgetting-") as tmp:
        scratch = Path(tmp)
        if settings["quick"] and not settings["model_dir"]:
            from ftengine.bench.ddp import tiny_model_dir

            model_dir, layers = str(tiny_model_dir(scratch / "model")), 4
        else:
            model_dir = model_source(settings["model_dir"], bool(settings["random_init"]), scratch / "model")
            layers = json.loads((locate(model_dir) / "config.json").read_text())["num_hidden_layers"]
        if not model_dir.startswith("pkg:"):  # the run reads it from a spec in another folder
            model_dir = str(Path(model_dir).resolve())
        ood_csv = ood.write_csv(sentences, scratch / "ood.csv")
        runs = _run_all(settings | {"partial": getattr(args, "partial", None)}, log, scratch, model_dir, layers,
                        str(ood_csv))
    return _result(settings | {"layers": layers}, sentences, runs)


def _result(settings: dict[str, Any], sentences: list[ood.Sentence], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The result file's content: environment, settings, OOD corpus facts, summary, runs."""
    corpus = {"source": f"{ood.PACKAGE}/{ood.FOLDER}/{ood.FILE}", "install": ood.INSTALL,
              "neutral_band": ood.NEUTRAL_BAND, "examples": len(sentences), "classes": ood.class_counts(sentences)}
    env = environment("cpu", threads=settings["threads"])  # at the end: the load average the runs saw
    return {"suite": "forgetting", "environment": env, "settings": settings, "ood": corpus,
            "summary": summarize(runs), "runs": runs}


def _run_all(settings: dict[str, Any], log: Any, scratch: Path, model_dir: str, layers: int,
             ood_csv: str) -> list[dict[str, Any]]:
    """Seeds outermost: a partial sweep on a busy machine still compares every method on the same seeds."""
    jobs = []
    for seed in settings["seeds"]:
        folder = str(scratch / f"seed{seed}")
        base = base_spec(seed=seed, epochs=settings["epochs"], train=settings["train"],
                         validation=settings["validation"], test=settings["test"], threads=settings["threads"],
                         out_dir=folder, source=model_dir, max_length=settings["max_length"])
        jobs += [({"spec": method_spec(method, base, l2sp_strength=settings["l2sp_strength"], layers=layers),
                   "dir": folder, "ood_csv": ood_csv, "threads": settings["threads"], "model_dir": model_dir},
                  {"method": method, "seed": seed, "shared_process": bool(settings["quick"])})
                 for method in settings["methods"]]
    # --quick: every run in one process (interpreter and imports once: a smoke test, not a memory measurement)
    batches = [jobs] if settings["quick"] else [[job] for job in jobs]
    runs: list[dict[str, Any]] = []
    with progress(len(jobs), "forgetting", log, unit="run") as bar:
        for batch in batches:
            bar.start(", ".join(f"{tag['method']} / seed {tag['seed']}" for _, tag in batch))
            for record, (_, tag) in zip(spawn([config for config, _ in batch], scratch), batch, strict=True):
                run = record | tag
                bar.log(f"[{len(runs) + 1}/{len(jobs)}] {run['method']} seed {run['seed']}: val acc "
                        f"{run['val_accuracy']:.4f}, OOD acc {run['ood_accuracy']:.4f} / F1 {run['ood_macro_f1']:.4f}, "
                        f"{run['seconds']:.0f} s, peak RSS {run['peak_rss_mb']:.0f} MB")
                bar.done()
                runs.append(run)
                if settings.get("partial"):  # one JSON line per finished run
                    with open(settings["partial"], "a") as f:
                        f.write(json.dumps(run | {"layers": layers}) + "\n")
    return runs


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        for one in json.loads(Path(sys.argv[2]).read_text()):
            print(MARK + json.dumps(_worker(one)), flush=True)
    else:
        sys.exit("usage: python -m ftengine.bench.forgetting --worker CONFIG_JSON")
