"""`ftengine eval RUN_DIR`: score a finished run's model on its test split or on another labelled file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftengine.cli._common import add_trust_arguments, formatter, trusted

EPILOG = """\
examples:
  ftengine eval runs/quickstart
  ftengine eval runs/quickstart --data new_tweets.csv
  ftengine eval runs/image_efficientnet_lite0 --json > eval.json

The model is rebuilt from the run directory (resolved spec, labels.json, model/). Without --data the run's
own test split is scored (validation when it has none), reproduced from the spec's seeded split. --data
takes a file (or image folder) in the training data's format, labels required; class names must be ones
the run was trained on. Prints accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.
A module backbone's package must be allowed again (--allow-module PKG or FTENGINE_ALLOW_MODULES), as for run.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` command."""
    parser = subparsers.add_parser(
        "eval", help="score a finished run on its test split or another labelled file",
        description="Score a finished run's model.", epilog=EPILOG, formatter_class=formatter())
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    parser.add_argument("--data", metavar="FILE", help="labelled file (or image folder) to score instead")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--output", metavar="FILE", help="also write the report as JSON to FILE")
    add_trust_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Print the report (table or JSON)."""
    from ftengine.runtime import evaluate_run
    from ftengine.runtime.report import format_report

    with trusted(args):  # a module backbone's factory runs again to rebuild the model
        report = evaluate_run(args.run_dir, args.data, device=args.device)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, title=report["data"]), end="")
    return 0
