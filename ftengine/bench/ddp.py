"""``ftengine bench ddp``: data-parallel step time and gradient bytes per step, ftengine vs DistributedDataParallel,
through a gradual-unfreezing recipe (head only -> top layer -> top 3 layers), on N CPU processes (gloo).

The N ranks are started with ``torch.multiprocessing.spawn`` (MASTER_ADDR 127.0.0.1, a free port), each with one
intra-op thread, so N ranks use N cores. Every rank trains the three variants of ``ddp_variants`` side by side:
each starts from the same seeded weights and sees the same fixed random token batches (each rank its own share
of every global batch); within a stage the variants take turns, so drift on a shared machine hits all of them.
Step time is the slowest rank's wall time of each step (a step ends with a collective, so ranks finish together);
the median over the stage's steps after its warm-up steps is reported. Bytes are per rank and per step.

Step time does not depend on the weights or the tokens, so random batches are fine; the model is the bundled
MiniLM-L6 (or ``--model-dir``, or a tiny random 4-layer BERT with ``--quick``).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ftengine.bench.cache_data import bench_spec_dict
from ftengine.bench.kit import echo, environment, progress, spread
from ftengine.bench.ddp_setup import NUM_CLASSES, Setup
from ftengine.bench.random_init import copy_shape_files, model_source

def stages_for(layers: int) -> list[list[str]]:
    """Head only, then the top layer, then the top three layers (gradual unfreezing, top-down)."""
    top = layers - 1
    return [["head"], [f"encoder.layer.{top}", "head"], [f"encoder.layer.{max(top - 2, 0)}-{top}", "head"]]


def tiny_model_dir(dest: Path, seed: int = 0) -> Path:
    """A random 4-layer BERT (hidden 64) with the bundled MiniLM's tokenizer, for --quick and the tests."""
    import torch
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    copy_shape_files(model_source(None, False, dest), dest)
    vocab = sum(1 for _ in open(dest / "vocab.txt", encoding="utf-8"))
    config = BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    hf_logging.disable_progress_bar()  # a "writing shards" bar says nothing in a suite's log
    try:
        model.save_pretrained(str(dest))
    finally:
        hf_logging.enable_progress_bar()
    return dest


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous port of the spawned ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_options(nproc: int, batch: int, steps: int, warmup: int, variants: str) -> None:
    """One line per bad option (exit 2), before any process starts."""
    from ftengine.bench.options import DDP_VARIANTS
    from ftengine.errors import SpecError

    unknown = sorted(set(variants.split(",")) - set(DDP_VARIANTS))
    problems = [f"bench ddp: --variants: unknown {', '.join(unknown)}; choose from {', '.join(DDP_VARIANTS)}"] \
        if unknown else []
    if nproc < 2:
        problems.append(f"bench ddp: --nproc must be at least 2 (got {nproc}); data parallelism needs 2 ranks")
    elif batch % nproc:
        problems.append(f"bench ddp: --batch-size {batch} does not split over --nproc {nproc} ranks; give a "
                        f"multiple of {nproc}")
    if not 0 <= warmup < steps:
        problems.append(f"bench ddp: --warmup {warmup} leaves no timed step of --steps {steps}; give fewer warm-up "
                        "steps or more steps")
    if problems:
        raise SpecError(problems)


def run_ddp_bench(args: Any, log: Callable[[str], None] = echo) -> dict[str, Any]:
    """Spawn the ranks, collect rank 0's figures, add settings, environment and targets; returns a JSON-able dict."""
    import torch.multiprocessing as mp

    from ftengine.bench.ddp_worker import rank_main

    quick = bool(getattr(args, "quick", False))
    steps = args.steps or (4 if quick else 12)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    batch, length = args.batch_size or (8 if quick else 32), args.max_length or (16 if quick else 64)
    check_options(args.nproc, batch, steps, warmup, args.variants)
    result: dict[str, Any] = dict(bench="ddp", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  environment=environment("cpu", threads=1))
    with tempfile.TemporaryDirectory(prefix="ftengine-bench-ddp-") as tmp, \
            progress(1, "ddp", log, unit="run") as bar:
        if quick:
            source = str(tiny_model_dir(Path(tmp) / "tiny-bert"))
        else:
            source = model_source(args.model_dir, args.random_init, Path(tmp) / "random-init-model")
        config = _config(source)
        setup = Setup(source=source, stages=stages_for(int(config["num_hidden_layers"])), batch_size=batch,
                      max_length=length, vocab=int(config["vocab_size"]), steps=steps,
                      warmup=warmup, nproc=args.nproc, variants=args.variants.split(","), seed=0,
                      out=str(Path(tmp) / "rank0.json"), fill_dir=str(Path(tmp) / "fill-ranks"),
                      fill_examples=args.fill_examples if args.fill_examples is not None else (64 if quick else 1024))
        singles = []
        if setup.fill_examples:  # 1 process x N threads, before and after the ranks' fill (drift hits both sides)
            bar.start(f"fill, 1 process x {args.nproc} threads")
            singles.append(_single_fill(setup, Path(tmp) / "fill-single-1"))
        port = free_port()
        bar.start(f"{args.nproc} ranks")
        # One intra-op thread per rank from the start (the spawned interpreters read these when torch loads).
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            mp.spawn(rank_main, args=(setup,), nprocs=args.nproc, join=True)
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        ranks = json.loads(Path(setup.out).read_text())
        if setup.fill_examples:
            singles.append(_single_fill(setup, Path(tmp) / "fill-single-2"))
        bar.done()
    result["settings"] = dict(asdict(setup), source=args.model_dir or ("tiny random BERT" if quick else source),
                              out=None, quick=quick, random_init=bool(getattr(args, "random_init", False)))
    result["world"] = dict(size=args.nproc, backend="gloo", launcher="torch.multiprocessing.spawn",
                           master_addr="127.0.0.1", intra_op_threads_per_rank=1, interop_threads_per_rank=1)
    result.update(summarize(ranks, setup))
    if setup.fill_examples:
        result["fill"] = summarize_fill([r["fill"] for r in ranks["ranks"]], singles)
        result["targets"].update(fill_targets(result["fill"]))
    for line in lines(result):
        log(line)
    return result


def _single_fill(setup: Setup, cache_dir: Path) -> dict[str, Any]:
    from ftengine.bench.ddp_fill import fill_spec, single_fill

    spec = fill_spec(setup.source, setup.fill_examples, setup.max_length, setup.stages, str(cache_dir))
    return single_fill(spec, threads=setup.nproc)


def summarize_fill(ranks: list[dict[str, Any]], singles: list[dict[str, Any]]) -> dict[str, Any]:
    """N ranks x 1 thread vs 1 process x N threads (the mean of the fills before and after the ranks')."""
    single = statistics.mean(s["seconds"] for s in singles)
    parallel = max(r["seconds"] for r in ranks)
    return dict(examples=ranks[0]["train_examples"], ranks=len(ranks), boundaries=ranks[0]["boundaries"],
                tier=ranks[0]["tier"], bytes=ranks[0]["bytes"], parallel_seconds=parallel, single_seconds=single,
                single_seconds_each=[s["seconds"] for s in singles], ratio=round(parallel / single, 3),
                examples_per_rank=[r["examples_computed"] for r in ranks],
                single_examples_computed=[s["examples_computed"] for s in singles],
                filled_per_rank=[r["filled"] for r in ranks])


def fill_targets(fill: dict[str, Any]) -> dict[str, Any]:
    """Each rank computed its 1/N share (within one fill batch, every example once) and the time ratio."""
    from ftengine.bench.ddp_fill import FILL_BATCH

    counts, n, share = fill["examples_per_rank"], fill["examples"], fill["examples"] / fill["ranks"]
    return {"fill_each_rank_computes_1_over_n": sum(counts) == n and all(abs(c - share) <= FILL_BATCH
                                                                          for c in counts),
            "fill_n_ranks_le_1.1x_one_process": fill["ratio"] <= 1.1}


def _config(source: str) -> dict[str, Any]:
    from ftengine.bench.random_init import locate

    return json.loads((locate(source) / "config.json").read_text())


def summarize(ranks: dict[str, Any], setup: Setup) -> dict[str, Any]:
    """Per variant and stage: median step ms (slowest rank per step, warm-up excluded), bytes per step, replicas."""
    variants: dict[str, Any] = {}
    for name, v in ranks["variants"].items():
        stages = []
        for s, st in enumerate(v["stages"]):
            per_rank = [r["variants"][name]["stages"][s]["step_seconds"] for r in ranks["ranks"]]
            slowest = [max(col) * 1e3 for col in zip(*per_rank, strict=True)][setup.warmup:]
            grad_steps = st["grad_bytes_per_step"][setup.warmup:]
            stages.append(dict(name=st["name"], trainable=st["trainable"],
                               median_ms=round(statistics.median(slowest), 2), step_ms=spread(slowest, 2),
                               grad_bytes_per_step=int(statistics.median(grad_steps)),
                               grad_bytes_per_step_all=sorted(set(grad_steps)),
                               control_bytes_per_step=st["control_bytes_per_step"],
                               trainable_tensors=st["trainable_tensors"],
                               trainable_param_bytes=st["trainable_param_bytes"],
                               expected_bytes=st["expected_bytes"], wrap_seconds=st.get("wrap_seconds")))
        sums = [r["variants"][name]["checksum"] for r in ranks["ranks"]]
        variants[name] = dict(stages=stages, checksums=sums, replicas_equal=all(x == sums[0] for x in sums))
    return dict(model=ranks["model"], variants=variants, targets=targets(variants, ranks["model"]))


def targets(variants: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, as measured (reported, never asserted here)."""
    out: dict[str, Any] = {}
    if "ftengine" in variants:
        ft = variants["ftengine"]["stages"]
        out["ftengine_bytes_per_step_eq_trainable"] = all(s["grad_bytes_per_step_all"] == [s["expected_bytes"]]
                                                          for s in ft)
        out["ftengine_replicas_equal"] = variants["ftengine"]["replicas_equal"]
    if "ddp-lr0" in variants:
        out["ddp_lr0_moves_all_parameter_bytes"] = all(s["grad_bytes_per_step"] >= model["param_bytes"]
                                                       for s in variants["ddp-lr0"]["stages"])
        out["ddp_lr0_replicas_equal"] = variants["ddp-lr0"]["replicas_equal"]
    if "ftengine" in variants and "ddp-rewrap" in variants:  # same trainable set: equal gradient bytes
        ratios = [f["median_ms"] / d["median_ms"] for f, d in zip(variants["ftengine"]["stages"],
                                                                   variants["ddp-rewrap"]["stages"], strict=True)]
        out["ftengine_over_ddp_rewrap_step_time"] = [round(r, 3) for r in ratios]
        out["ftengine_step_no_slower_than_ddp_at_equal_communication"] = all(r <= 1.0 for r in ratios)
    return out


def lines(result: dict[str, Any]) -> list[str]:
    """One line per variant and stage (the JSON has everything)."""
    out = []
    for name, v in result["variants"].items():
        for s in v["stages"]:
            out.append(f"{name:<11} {s['name']:<7} {s['median_ms']:8.1f} ms/step  "
                       f"grads {s['grad_bytes_per_step'] / 2**20:7.2f} MiB/step"
                       + (f" (trainable {s['expected_bytes'] / 2**20:.2f} MiB)" if s["expected_bytes"] else ""))
        out.append(f"{name:<11} replicas equal at the end: {v['replicas_equal']}")
    return out
