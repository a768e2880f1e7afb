"""The bench suites' command-line options, defined once for `ftengine bench` and the scripts in bench/.

Torch-free on purpose: `ftengine --help` builds every subcommand's parser, so this module (and what it imports:
the cache scenarios and e2e recipes, plain data) must not pull in torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ftengine.bench.cache_data import SCENARIOS as CACHE_SCENARIO_FREEZE
from ftengine.bench.e2e_recipes import RECIPES
from ftengine.bench.forgetting_methods import METHODS as FORGETTING_METHODS

SUITES = ("optimizer", "cache", "e2e")
"""The suites in the order `ftengine bench all` runs them."""

OPTIMIZER_IMPLS = ("ftengine", "ftengine-bf16m", "ftengine-l2sp", "ftengine-l2sp-bf16", "torch-forloop", "torch-foreach",
                   "torch-fused")
"""Optimizer implementations: FlatOptimizer with fp32 / bf16 moments, FlatOptimizer with L2-SP (fp32 anchor, every
group anchored), torch.optim.AdamW for-loop / foreach / fused."""

OPTIMIZER_MODELS = ("minilm-l6", "bert-base", "llama-1b", "resnet50")
"""Parameter shapes the optimizer suite knows (MiniLM-L6 22.7M, BERT-base 110M, a 1.1B Llama, ResNet-50 25.6M)."""

CACHE_SCENARIOS = tuple(CACHE_SCENARIO_FREEZE)
E2E_IMPLS = ("ftengine", "plain", "hf")
"""ftengine's run_spec, a plain PyTorch loop, a Hugging Face Trainer run."""

DDP_VARIANTS = ("ftengine", "ddp-lr0", "ddp-rewrap")
"""ftengine's GradSync, DistributedDataParallel with frozen groups at lr 0, DDP(find_unused_parameters=True)
re-wrapped at every stage change."""


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench optimizer` and bench/optimizer.py."""
    impls = ",".join(OPTIMIZER_IMPLS)
    parser.add_argument("--models", default="bert-base,resnet50", help=f"comma list: {', '.join(OPTIMIZER_MODELS)}")
    parser.add_argument("--groups", default="1,14,26,100", help="comma list of optimizer group counts")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="fp32, bf16 (bf16 params + fp32 master weights and moments)")
    parser.add_argument("--frozen", default="0,0.5", help="comma list of frozen fractions (input-side groups)")
    parser.add_argument("--impls", default=impls, help=f"comma list of {', '.join(OPTIMIZER_IMPLS)}")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per implementation (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="BERT-base only, 14 and 26 groups (a few minutes on CPU)")
    parser.add_argument("--max-numel", type=int, default=None,
                        help="cut every parameter to at most this many elements (a quick smoke test of the sweep)")


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench cache` and bench/bench_cache.py."""
    parser.add_argument("--examples", type=int, default=512, help="tweets in the subset (90%% train)")
    parser.add_argument("--max-length", type=int, default=64, help="tokenizer max_length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="uncached/cached epoch pairs per scenario")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="cache element type")
    parser.add_argument("--tier", choices=("auto", "device", "host", "disk"), default="auto",
                        help="where the cache lives (device: GPU memory on a CUDA device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--scenarios", nargs="+", choices=CACHE_SCENARIOS, default=list(CACHE_SCENARIOS))
    add_model_arguments(parser)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-dir and --random-init of the cache and e2e suites (both train MiniLM by default)."""
    parser.add_argument("--model-dir", default=None,
                        help="model directory or pkg:<package>/<dir> (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--random-init", action="store_true",
                        help="fresh random weights of the model's shape: needs only its config and tokenizer files "
                             "(for machines without the weights; speed does not depend on them, accuracy does)")


def add_e2e_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench e2e` and bench/e2e.py."""
    parser.add_argument("--recipes", default="feature_extraction,gradual_unfreeze",
                        help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument("--impls", default=",".join(E2E_IMPLS), help=f"comma-separated, from {', '.join(E2E_IMPLS)}")
    parser.add_argument("--train", type=int, default=1200, help="training examples (seeded subset of the tweets)")
    parser.add_argument("--validation", type=int, default=600, help="validation examples")
    parser.add_argument("--repeats", type=int, default=1, help="runs per (recipe, implementation)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every run")
    parser.add_argument("--target", type=float, default=None,
                        help="validation accuracy to reach (default: lowest final accuracy per recipe and repeat)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every implementation runs there)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="autocast in every implementation (auto: bf16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--scale", choices=("small", "quickstart"), default="small",
                        help="small: --recipes on --train/--validation tweets (the quick sweep); quickstart: on the "
                             "quickstart's own split, how much sooner ftengine reaches HF Trainer's final accuracy "
                             "with HF's standard recipe (--runs; about 12 minutes on 2 cores)")
    parser.add_argument("--runs", default=None,
                        help="--scale quickstart: recipe/impl pairs, the first hf_standard/hf (default: hf_standard/hf,"
                             "spec:specs/quickstart.yaml/ftengine,hf_standard/ftengine)")
    add_model_arguments(parser)


def add_ddp_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench ddp`."""
    parser.add_argument("--nproc", type=int, default=2, help="ranks (processes, one intra-op thread each)")
    parser.add_argument("--variants", default=",".join(DDP_VARIANTS),
                        help=f"comma-separated, from {', '.join(DDP_VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per stage and variant, warm-up included (default 12; --quick 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps per stage (default 2; --quick 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch, split over the ranks (default 32; --quick 8)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per example (default 64; --quick 16)")
    parser.add_argument("--fill-examples", type=int, default=None,
                        help="tweets whose frozen prefix the cache-fill measurement computes: N ranks x 1 thread vs "
                             "1 process x N threads (default 1024; --quick 64; 0: skip it)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny random 4-layer BERT and a few steps (a smoke test, seconds)")
    add_model_arguments(parser)


def add_forgetting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench forgetting` (sizes left None take the full or the --quick defaults)."""
    parser.add_argument("--methods", default=",".join(FORGETTING_METHODS),
                        help=f"comma-separated, from {', '.join(FORGETTING_METHODS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; --quick 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the stage that trains the backbone or adapters (default 2; --quick 1)")
    parser.add_argument("--train", type=int, default=None, help="training tweets (default 1200; --quick 64)")
    parser.add_argument("--validation", type=int, default=None, help="validation tweets (default 600; --quick 32)")
    parser.add_argument("--test", type=int, default=None, help="test tweets (default 400; --quick 32)")
    parser.add_argument("--max-length", type=int, default=None, help="tokenizer max_length (default 64; --quick 32)")
    parser.add_argument("--ood-limit", type=int, default=None,
                        help="out-of-distribution sentences scored, spread over the corpus (default: all 3,697)")
    parser.add_argument("--l2sp-strength", type=float, default=300.0, help="optimizer.l2sp.strength of the l2sp method")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every run")
    parser.add_argument("--quick", action="store_true",
                        help="one seed of a tiny random 4-layer BERT on a few dozen tweets, every run in one process "
                             "(a smoke test, about a minute)")
    parser.add_argument("--partial", type=Path, default=None, help="append each finished run to this JSON-lines file")
    parser.add_argument("--summarize", type=Path, default=None,
                        help="run nothing: build the result from the runs in a --partial file (same options)")
    add_model_arguments(parser)


ADD_ARGUMENTS = {"optimizer": add_optimizer_arguments, "cache": add_cache_arguments, "e2e": add_e2e_arguments,
                 "ddp": add_ddp_arguments, "forgetting": add_forgetting_arguments}


def add_all_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `ftengine bench all`: the ones every suite shares."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in every suite (default: each suite's own: torch's choice, e2e 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for optimizer and cache (e2e runs on the CPU)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench") / "results",
                        help="folder of the result files <suite>-<device>-<time>.json and .png "
                             "(default: bench/results)")


def suite_args(kind: str, shared: argparse.Namespace) -> argparse.Namespace:
    """The options of suite ``kind`` at their defaults, with `bench all`'s shared ones (optimizer: --quick)."""
    parser = argparse.ArgumentParser(add_help=False)
    ADD_ARGUMENTS[kind](parser)
    args = parser.parse_args([])
    if kind != "e2e":
        args.device = shared.device
    if shared.threads:
        args.threads = shared.threads
    args.quick, args.out = kind == "optimizer", None
    return args
