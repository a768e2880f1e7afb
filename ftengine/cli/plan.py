"""`ftengine plan SPEC`: show what a run would do, stage by stage, before spending compute."""

from __future__ import annotations

import argparse
import json

from ftengine.cli._common import add_spec_arguments, add_trust_arguments, formatter, load_and_plan, trusted

EPILOG = """\
examples:
  ftengine plan specs/text_gradual_unfreeze.yaml
  ftengine plan specs/text_gradual_unfreeze.yaml freeze.layerwise_lr_decay=0.8 freeze.max_unfrozen=4
  ftengine plan specs/image_efficientnet_lite0.yaml --allow-module efficientnet_lite_pytorch --json > plan.json

The table lists each stage (epochs, trainable groups as selector ranges such as encoder.layer.4-5,
trainable / total parameters), each group's peak learning rate per stage ('-' frozen), and where the
frozen prefix's activations can be cached with their size per example. --json prints the same plan as
the JSON a run writes to plan.json. Nothing is loaded but the model's structure; building the structure
of a module backbone runs its factory, so its package must be allowed (--allow-module PKG or
FTENGINE_ALLOW_MODULES), as must an hf backbone's remote code (--trust-remote-code).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `plan` command."""
    parser = subparsers.add_parser(
        "plan", help="show the stages, trainable groups, learning rates and cache points of a spec",
        description="Show what a run would do, stage by stage, before spending compute.",
        epilog=EPILOG, formatter_class=formatter())
    add_spec_arguments(parser)
    add_trust_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (the run's plan.json)")


def main(args: argparse.Namespace) -> int:
    """Print the plan table (or JSON)."""
    from ftengine.planner.describe import describe  # here: `ftengine --help` imports no planner code

    with trusted(args):
        planned = load_and_plan(args.spec, args.overrides)
    if args.json:
        print(json.dumps(planned.graph.to_dict(), indent=2))
        return 0
    print(f"plan: {planned.path}")
    if planned.spec.description:
        print(f"  {planned.spec.description.strip()}")
    print(describe(planned.graph))
    return 0
