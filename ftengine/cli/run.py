"""`ftengine run SPEC`: placeholder until the training runtime lands; it validates and plans, then stops."""

from __future__ import annotations

import argparse
import sys

from ftengine.cli._common import add_spec_arguments, formatter, load_and_plan

EPILOG = """\
examples:
  ftengine run specs/quickstart.yaml
  ftengine run specs/text_feature_extraction.yaml training.epochs=1

This build does not train yet: `run` validates the spec, prints the plan and exits with status 1.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` command."""
    parser = subparsers.add_parser(
        "run", help="fine-tune as the spec says (not built yet: validates and plans only)",
        description="Fine-tune as the spec says.", epilog=EPILOG, formatter_class=formatter())
    add_spec_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Validate and plan, then say plainly that training is not built."""
    planned = load_and_plan(args.spec, args.overrides)
    print(f"plan: {planned.path}")
    print(planned.graph.describe())
    print("ftengine run: training is not built yet in this version; the spec is valid and the plan above is "
          "what a run will do", file=sys.stderr)
    return 1
