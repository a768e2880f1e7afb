"""Command line: `ftengine <command>` / `python -m ftengine <command>`.

One subcommand per module in this package; each exposes `register(subparsers)` (adding its parser) and
`main(args) -> int`. Modules are imported from a fixed list so `ftengine --help` stays fast: none of them
imports torch at module level.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from ftengine import __version__
from ftengine.errors import FtengineError

COMMANDS = ("validate", "plan", "schema", "info", "run", "eval", "predict", "cache", "bench")

_EPILOG = """\
examples:
  ftengine validate specs/text_feature_extraction.yaml
  ftengine plan specs/text_gradual_unfreeze.yaml freeze.groups_per_stage=3
  ftengine plan specs/image_efficientnet_lite0.yaml --allow-module efficientnet_lite_pytorch --json > plan.json
  ftengine schema > ftengine.schema.json
  ftengine info

Overrides (key.path=value, value read as YAML) apply before validation: training.epochs=1,
optimizer.lr=3e-5, freeze.stages[1].epochs=2 (or freeze.stages.1.epochs=2). Problems print one per line as
`file: dotted.path: what is wrong (got X); how to fix`; a bad spec exits with status 2.
"""


def _command_module(name: str) -> ModuleType:
    """Import `ftengine.cli.<name>` (every name in COMMANDS has one; a failing import is a bug and raises)."""
    return importlib.import_module(f"{__name__}.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="ftengine", description="Declarative fine-tuning of pretrained backbones.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ftengine {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for every error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command_module(name)
        before = set(subparsers.choices)
        module.register(subparsers)
        for added in set(subparsers.choices) - before:
            sub = subparsers.choices[added]
            sub.set_defaults(_main=module.main)
            if "--debug" not in sub._option_string_actions:
                # SUPPRESS: a --debug before the command is not reset by the subparser's default.
                sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show Python tracebacks for every error")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`, letting KEY=VALUE overrides also follow options (`run SPEC --nproc 2 training.epochs=1`),
    which argparse alone refuses once an option has ended the positionals."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status.

    0 success; 2 a bad spec, plan or data set (or bad command-line usage); 1 a run that failed or a bug
    (its traceback is shown); 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = parse(build_parser(), argv)
        return int(args._main(args) or 0)
    except FtengineError as err:
        if debug:
            raise
        for line in err.problems:
            print(line, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("ftengine: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BrokenPipeError:
        # `ftengine schema | head`: the reader left; stop quietly (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:
        if debug:
            raise
        traceback.print_exc()
        print("ftengine: internal error (a bug, not a problem with your spec); please report it with the "
              "traceback above", file=sys.stderr)
        return 1
