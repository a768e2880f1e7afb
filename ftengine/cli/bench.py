"""`ftengine bench optimizer | cache | e2e | all`: the benchmarks; a table, a JSON result file and a PNG chart each."""

from __future__ import annotations

import argparse
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
  ftengine bench all --threads 2                        # optimizer --quick, cache, e2e; bench/results/*.json + .png
  ftengine bench all --device cuda --out-dir runs/bench  # optimizer and cache on the GPU (e2e on the CPU)

`optimizer` times the fused per-group FlatOptimizer step (fp32 and bf16 moments) against torch.optim.AdamW
for-loop / foreach / fused on BERT-base and ResNet-50 parameter shapes split into 1, 14, 26 or 100 groups,
0% or 50% frozen. Each implementation is first checked against the PyTorch reference. Reported: ms/step,
effective GB/s (bytes moved per parameter x trainable parameters / time) and the ratio to a plain copy of the
same bytes timed in the same run.

Every suite prints its lines as it goes (a progress bar on stderr when it is a terminal), then a table of medians,
and writes <suite>-<device>-<time>.json (device, CPU/GPU model, versions, threads, git commit, settings, every
repeated figure with min/median/max) and a chart beside it with the same name and .png. `all` runs the three
suites in sequence with their defaults (the optimizer's --quick selection) and the shared --threads, --device and
--out-dir.
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
    """Add the `bench` command with its `optimizer`, `cache`, `e2e` and `all` subcommands."""
    parser = subparsers.add_parser("bench", help="benchmark the fused optimizer, the activation cache, whole runs",
                                   description="Benchmarks; results are printed and written as JSON with a PNG chart.",
                                   epilog=EPILOG, formatter_class=formatter())
    sub = parser.add_subparsers(dest="bench_command", metavar="{optimizer,cache,e2e,all}", required=True)
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
    every = sub.add_parser("all", help="optimizer (--quick), cache and e2e in sequence, each with its defaults",
                           epilog=EPILOG, formatter_class=formatter())
    every.add_argument("--threads", type=int, default=None,
                       help="torch threads in every suite (default: each suite's own: torch's choice, e2e 2)")
    every.add_argument("--device", default="cpu", help="cpu or cuda[:N] for optimizer and cache (e2e runs on the CPU)")
    every.add_argument("--out-dir", type=Path, default=Path("bench") / "results",
                       help="folder of the result files <suite>-<device>-<time>.json and .png (default: bench/results)")


SUITES = ("optimizer", "cache", "e2e")


def suite_args(kind: str, shared: argparse.Namespace) -> argparse.Namespace:
    """The options of suite ``kind`` at their defaults, with `bench all`'s shared ones (optimizer: --quick)."""
    from ftengine.runtime.e2e_bench import add_arguments as add_e2e_arguments

    parser = argparse.ArgumentParser(add_help=False)
    {"optimizer": add_optimizer_arguments, "cache": add_cache_arguments, "e2e": add_e2e_arguments}[kind](parser)
    args = parser.parse_args([])
    if kind != "e2e":
        args.device = shared.device
    if shared.threads:
        args.threads = shared.threads
    args.quick, args.out = kind == "optimizer", None
    return args


def measure(kind: str, args: argparse.Namespace) -> dict:
    """Run one suite; its result lines are printed as they come (a progress bar on stderr when it is a terminal)."""
    from ftengine.runtime.benchkit import echo as log

    if kind == "e2e":
        from ftengine.runtime.e2e_bench import run_e2e_bench

        return run_e2e_bench(args, log=log)
    if kind == "cache":
        from ftengine.runtime.cache.bench import run_cache_bench

        return run_cache_bench(args, log=log)
    from ftengine.kernels.optim_bench import run_sweep

    return run_sweep(args, log=log)


def report(kind: str, result: dict, out: Path) -> None:
    """Write the result JSON and its PNG chart, print the suite's table."""
    if kind == "e2e":
        from ftengine.runtime.e2e_report import plot, table
    elif kind == "cache":
        from ftengine.runtime.cache.bench_report import plot, table
    else:
        from ftengine.kernels.optim_report import plot, table
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result), flush=True)
    print(f"wrote {out} and {out.with_suffix('.png').name}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark (or all three), print its lines and table, write the JSON file and the chart."""
    runs = ([(kind, suite_args(kind, args)) for kind in SUITES] if args.bench_command == "all"
            else [(args.bench_command, args)])
    out_dir = getattr(args, "out_dir", Path("bench") / "results")
    for kind, suite in runs:
        if len(runs) > 1:
            print(f"== bench {kind}", flush=True)
        result = measure(kind, suite)
        device = str(getattr(suite, "device", "cpu")).replace(":", "")
        report(kind, result, suite.out or out_dir / f"{kind}-{device}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    return 0
