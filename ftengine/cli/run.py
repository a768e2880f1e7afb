"""`ftengine run SPEC`: fine-tune as the spec says, writing a run directory (or continue one with --resume)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ftengine.cli._common import OVERRIDES_HELP, _prefixed, add_trust_arguments, formatter, load, trusted
from ftengine.errors import PlanError, RunError, SpecError

EPILOG = """\
examples:
  ftengine run specs/quickstart.yaml
  ftengine run specs/text_feature_extraction.yaml training.epochs=1 data.limit=2000
  ftengine run specs/quickstart.yaml --resume          # continue runs/quickstart from its last checkpoint
  ftengine run --resume runs/quickstart                # the same, from the run directory alone
  ftengine run specs/quickstart.yaml output.overwrite=true
  ftengine run specs/image_efficientnet_lite0.yaml --allow-module efficientnet_lite_pytorch
  ftengine run specs/quickstart.yaml --nproc 2          # data parallel: 2 processes on this machine
  torchrun --nproc_per_node 4 -m ftengine run specs/quickstart.yaml   # the same through torchrun

The run directory (output.dir/output.name, default runs/<spec file name>) receives the resolved spec,
plan.json, labels.json, metrics.jsonl (one row per epoch), checkpoints/ (last, best), model/ (weights
and head config; hf backbones also a save_pretrained folder), report.json for the test split, and plots/.
A finished run directory is never overwritten unless output.overwrite=true. Ctrl-C saves a checkpoint
and exits with status 130; --resume continues from it, mid-epoch and mid-stage.
With --nproc N (or under torchrun, on one or several machines) training.batch_size stays the global
batch, split evenly over the processes; rank 0 writes the run directory, and every rank can resume it,
with the same or another number of processes.
A module backbone's factory (and a user adapter) runs only when its top-level package is allowed
(--allow-module PKG, or FTENGINE_ALLOW_MODULES=pkg1,pkg2); an hf backbone's trust_remote_code: true
needs --trust-remote-code (or FTENGINE_TRUST_REMOTE_CODE=1). Otherwise the run stops with exit 2 first.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` command."""
    parser = subparsers.add_parser(
        "run", help="fine-tune as the spec says (or --resume a run)", description="Fine-tune as the spec says.",
        epilog=EPILOG, formatter_class=formatter())
    parser.add_argument("spec", metavar="SPEC", nargs="?", help="spec file (.yaml, .yml or .json)")
    parser.add_argument("overrides", metavar="KEY=VALUE", nargs="*", help=OVERRIDES_HELP)
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                        help="continue from the last checkpoint of the spec's run directory, or of RUN_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument("--nproc", type=int, default=None, metavar="N",
                        help="train on N data-parallel processes of this machine (started by torch.distributed.run;"
                             " for several machines use torchrun); the spec does not change")
    add_trust_arguments(parser)


def _targets(args: argparse.Namespace) -> tuple[Path, Path | None, bool | Path]:
    """(spec file to load, original spec path when resuming a directory, resume argument for run_spec)."""
    resume = args.resume
    if isinstance(resume, str) and Path(resume).suffix in (".yaml", ".yml", ".json") and Path(resume).is_file():
        args.spec, resume = resume, True  # `run --resume SPEC`: the spec, not a run directory
    if isinstance(resume, str):
        run_dir = Path(resume)
        if not (run_dir / "spec.resolved.yaml").is_file():
            raise RunError(f"--resume: {run_dir} is not a run directory (no spec.resolved.yaml); pass the folder a "
                           "run printed, or the spec file: ftengine run SPEC --resume")
        return run_dir / "spec.resolved.yaml", run_dir, run_dir
    if args.spec is None:
        raise SpecError("ftengine run: no spec file given; usage: ftengine run SPEC [KEY=VALUE ...] "
                        "or ftengine run --resume RUN_DIR")
    return Path(args.spec), None, resume


def _launch(args: argparse.Namespace, spec: Any, origin: Path, run_dir: Path | None) -> int:
    """Check what can be checked in one process, then start `--nproc` workers (see `ftengine.cli.launch`)."""
    from ftengine.cli.launch import check_nproc, launch
    from ftengine.runtime.distributed import World
    from ftengine.runtime.ranks import check_world
    from ftengine.runtime.run_dir import run_dir_of

    check_nproc(args.nproc)
    check_world(spec, World(size=args.nproc))
    return launch(args, str(run_dir if run_dir is not None else run_dir_of(spec, origin)))


def main(args: argparse.Namespace) -> int:
    """Load the spec (with overrides), train, print the results and the run directory."""
    from ftengine.backbones.trust import require_backbone_allowed
    from ftengine.runtime import run_spec
    from ftengine.runtime.run_dir import read_run_info

    spec_file, run_dir, resume = _targets(args)
    if args.spec is not None and run_dir is not None and args.spec != str(spec_file):
        args.overrides = [args.spec, *args.overrides]  # `run --resume DIR key=value`: the first one lands in SPEC
    path, spec = load(str(spec_file), list(args.overrides))
    origin = Path(read_run_info(run_dir).get("spec_path", path)) if run_dir is not None else path
    try:
        with trusted(args):
            require_backbone_allowed(spec.backbone)  # before the run directory is claimed or anything imported
            if args.nproc is not None and "WORLD_SIZE" not in os.environ:  # the launcher, not yet a worker
                return _launch(args, spec, origin, run_dir)
            run_spec(spec, origin, resume=resume, quiet=args.quiet)
    except (SpecError, PlanError) as err:
        raise _prefixed(err, origin) from None
    return 0
