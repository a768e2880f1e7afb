"""`ftengine predict RUN_DIR --input FILE`: label new examples with a finished run's model."""

from __future__ import annotations

import argparse

from ftengine.cli._common import add_trust_arguments, formatter, trusted

EPILOG = """\
examples:
  ftengine predict runs/quickstart --input tweets.csv
  ftengine predict runs/quickstart --input tweets.jsonl --output predictions.jsonl
  ftengine predict runs/resnet18_image_folder --input photos/

--input is a file in the training data's format (text: CSV/JSONL with the spec's text column; images: a
folder or a CSV of paths); a label column is optional and ignored. The output (CSV, or JSON lines when
--output ends in .jsonl) has the input text or image path, the predicted label, its confidence and one
p_<class> probability column per class, in input order. Default output:
RUN_DIR/predictions/<input name>.csv. A module backbone's package must be allowed again
(--allow-module PKG or FTENGINE_ALLOW_MODULES), as for run. Like eval, predict shares the run directory's
lock with other readers: it fails at once (exit 1) while a run or --resume writes the folder.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` command."""
    parser = subparsers.add_parser(
        "predict", help="label new examples with a finished run's model",
        description="Label new examples with a finished run's model.", epilog=EPILOG, formatter_class=formatter())
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    parser.add_argument("--input", required=True, metavar="FILE", help="examples to label (file or image folder)")
    parser.add_argument("--output", metavar="FILE", help="where to write predictions (.csv or .jsonl)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_trust_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Write the predictions and say where."""
    from ftengine.runtime import predict_run

    with trusted(args):  # a module backbone's factory runs again to rebuild the model
        out = predict_run(args.run_dir, args.input, args.output, device=args.device)
    with open(out, encoding="utf-8") as f:
        lines = sum(1 for _ in f) - (0 if out.suffix in (".jsonl", ".json", ".ndjson") else 1)  # minus a CSV header
    print(f"wrote {lines:,} predictions to {out}")
    return 0
