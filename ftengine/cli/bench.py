"""`ftengine bench optimizer | cache | e2e`: the kernel and cache benchmarks, results written as JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from ftengine.cli._common import formatter

EPILOG = """\
examples:
  ftengine bench optimizer --quick                      # BERT-base shapes, 14 and 26 groups, fp32 and bf16
  ftengine bench optimizer --models resnet50 --groups 6,100 --frozen 0
  ftengine bench optimizer --device cuda --out results.json
  ftengine bench cache --scenarios bottom4_frozen
  ftengine bench e2e --recipes feature_extraction --train 600 --validation 300

`optimizer` times the fused per-group FlatOptimizer step (fp32 and bf16 moments) against torch.optim.AdamW
for-loop / foreach / fused on BERT-base and ResNet-50 parameter shapes split into 1, 14, 26 or 100 groups,
0% or 50% frozen. Each implementation is first checked against the PyTorch reference. Reported: ms/step,
effective GB/s (bytes moved per parameter x trainable parameters / time) and the ratio to a plain copy of the
same bytes timed in the same run.
"""


IMPLS = "ftengine,ftengine-bf16m,torch-forloop,torch-foreach,torch-fused"  # as ftengine.kernels.optim_bench.IMPLS


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench optimizer` and bench/optimizer.py (no torch import: `ftengine --help` stays fast)."""
    parser.add_argument("--models", default="bert-base,resnet50", help="comma list: bert-base, resnet50")
    parser.add_argument("--groups", default="1,14,26,100", help="comma list of optimizer group counts")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="fp32, bf16 (bf16 params + fp32 master weights and moments)")
    parser.add_argument("--frozen", default="0,0.5", help="comma list of frozen fractions (input-side groups)")
    parser.add_argument("--impls", default=IMPLS, help=f"comma list of {IMPLS.replace(',', ', ')}")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per implementation (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="BERT-base only, 14 and 26 groups (a few minutes on CPU)")


CACHE_SCENARIOS = ("feature_extraction", "bottom4_frozen", "gradual_3stage")  # as ftengine.runtime.cache.bench.SCENARIOS


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench cache` and bench/bench_cache.py (no torch import: `ftengine --help` stays fast)."""
    parser.add_argument("--examples", type=int, default=512, help="tweets in the subset (90%% train)")
    parser.add_argument("--max-length", type=int, default=64, help="tokenizer max_length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="uncached/cached epoch pairs per scenario")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="cache element type")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--scenarios", nargs="+", choices=CACHE_SCENARIOS, default=list(CACHE_SCENARIOS))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` command with its `optimizer` (and `cache`) subcommands."""
    parser = subparsers.add_parser("bench", help="benchmark the fused optimizer or the activation cache",
                                   description="Benchmarks; results are printed and written as JSON.",
                                   epilog=EPILOG, formatter_class=formatter())
    sub = parser.add_subparsers(dest="bench_command", metavar="{optimizer,cache,e2e}", required=True)
    opt = sub.add_parser("optimizer", help="fused per-group optimizer vs torch.optim.AdamW", epilog=EPILOG,
                         formatter_class=formatter())
    add_optimizer_arguments(opt)
    opt.add_argument("--out", type=Path, default=None,
                     help="result file (default: bench/results/optimizer-<device>-<time>.json in the current directory)")
    cache = sub.add_parser("cache", help="epoch time uncached vs cached", epilog=EPILOG, formatter_class=formatter())
    add_cache_arguments(cache)
    cache.add_argument("--out", type=Path, default=None, help="result file")
    from ftengine.runtime.e2e_bench import add_arguments as add_e2e_arguments  # torch-free

    e2e = sub.add_parser("e2e", help="ftengine vs a plain PyTorch loop vs HF Trainer, same recipe and seed",
                         epilog=EPILOG, formatter_class=formatter())
    add_e2e_arguments(e2e)
    e2e.add_argument("--out", type=Path, default=None, help="result file")


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark, print one line per measurement, write the JSON file."""
    if args.bench_command == "e2e":
        from ftengine.runtime.e2e_bench import run_e2e_bench

        result, kind = run_e2e_bench(args, log=lambda line: print(line, flush=True)), "e2e"
    elif args.bench_command == "cache":
        from ftengine.runtime.cache.bench import run_cache_bench

        result, kind = run_cache_bench(args), "cache"
    else:
        from ftengine.kernels.optim_bench import run_sweep

        result, kind = run_sweep(args, log=lambda line: print(line, flush=True)), "optimizer"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    device = str(getattr(args, "device", "cpu")).replace(":", "")
    out = args.out or Path("bench") / "results" / f"{kind}-{device}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    if kind == "e2e":
        from ftengine.runtime.e2e_report import plot, table

        plot(result, out.with_suffix(".png"))
        print(table(result))
    return 0
