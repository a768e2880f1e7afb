"""`ftengine validate SPEC`: check a spec against its model structure without loading weights or data."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ftengine.cli._common import add_spec_arguments, add_trust_arguments, formatter, load, structure_and_plan, trusted
from ftengine.errors import DataError, PlanError, SpecError, UntrustedCodeError

EPILOG = """\
examples:
  ftengine validate specs/text_feature_extraction.yaml
  ftengine validate specs/text_gradual_unfreeze.yaml freeze.groups_per_stage=2 optimizer.lr=5e-5
  ftengine validate specs/resnet18_image_folder.yaml backbone.weights=null
  ftengine validate specs/image_efficientnet_lite0.yaml --allow-module efficientnet_lite_pytorch

Checks the spec's fields, builds the backbone's structure on the meta device (no weights, no memory),
compiles the freeze plan, and reads the data files' headers and first rows (missing file or column, a
folder given for a file, empty or binary content). No weights are read and no training runs. Every problem
prints on its own line
(`file: dotted.path: what is wrong (got X); how to fix`) and the exit status is 2; a valid spec prints
`ok: ...` and exits 0. Notes that are not errors print to stderr as `note: ...`.
No code named by the spec runs: the structure of a module backbone (or an hf one with trust_remote_code)
is built only when its package is allowed (--allow-module PKG, --trust-remote-code, or the
FTENGINE_ALLOW_MODULES / FTENGINE_TRUST_REMOTE_CODE variables); otherwise it is reported as not checked.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` command."""
    parser = subparsers.add_parser(
        "validate", help="check a spec (fields, freeze plan, files) without loading weights",
        description="Check a spec against its model structure without loading weights or data.", epilog=EPILOG, formatter_class=formatter())
    add_spec_arguments(parser)
    add_trust_arguments(parser)


def data_path_problems(spec: Any, spec_path: Path) -> list[str]:
    """Problems with the data files the spec names (missing, a folder for a file, binary, no rows, missing
    columns), one line each, from their headers and first rows (see :mod:`ftengine.data.checks`)."""
    from ftengine.data.checks import check_data_files

    return [f"{spec_path}: {line}" for line in check_data_files(spec.data, spec_path.parent)]


def summary(planned: Any) -> str:
    """`ok: <file>: <backbone>, <groups>, <params>; <recipe>: <stages>; cache ...`."""
    from ftengine.planner.describe import human_count

    spec, graph = planned.spec, planned.graph
    recipe = spec.freeze.preset or "stages"
    epochs = sum(s.epochs for s in graph.stages)
    plateau = " at most" if any(s.until_plateau for s in graph.stages) else ""
    total = graph.total_params
    params = f"{human_count(total)} params" if total else \
        f"{human_count(sum(g.num_params or 0 for g in graph.backbone_groups))} backbone params"
    boundaries = graph.cache_boundaries()
    cache = f"cache at boundaries {', '.join(map(str, boundaries))}" if boundaries else "no activation cache"
    stages = f"{len(graph.stages)} stage{'s' if len(graph.stages) != 1 else ''}"
    return (f"ok: {planned.path}: {graph.backbone}, {len(graph.backbone_groups)} groups, {params}; "
            f"{recipe}: {stages},{plateau} {epochs} epochs; {cache}")


def data_section_problems(spec_path: Path, overrides: list[str]) -> list[str]:
    """The data files' problems of a spec that fails validation in other sections: its data section validated and
    checked on its own, so one `validate` lists the files' problems too (none when that section does not validate)."""
    from pydantic import TypeAdapter, ValidationError

    from ftengine.spec import Spec, apply_overrides, read_spec_file

    try:
        raw = apply_overrides(read_spec_file(spec_path), overrides)
        data = TypeAdapter(Spec.model_fields["data"].rebuild_annotation()).validate_python(raw.get("data"))
    except (SpecError, ValidationError):
        return []
    return data_path_problems(SimpleNamespace(data=data), spec_path)


def main(args: argparse.Namespace) -> int:
    """Validate; raises SpecError/PlanError/DataError with every problem (fields, plan and files together)."""
    try:
        path, spec = load(args.spec, args.overrides)
    except SpecError as err:
        if any(re.search(r"(^|: )data[.:\[]", line) for line in err.problems):
            raise  # the data section has problems of its own: its files wait until it is fixed
        raise SpecError(err.problems + data_section_problems(Path(args.spec), args.overrides)) from None
    missing = data_path_problems(spec, path)
    try:
        with trusted(args):
            planned = structure_and_plan(path, spec)
    except UntrustedCodeError as err:
        # The spec itself is fine; what needs the structure is skipped rather than running unallowed code.
        if missing:
            raise DataError(missing) from None
        print(f"ok: {path}: fields and data files checked; backbone structure and freeze plan not checked")
        print(f"note: {err.what}, which is not allowed; to check them too, run with {err.allow}", file=sys.stderr)
        return 0
    except (SpecError, PlanError) as err:
        raise type(err)(err.problems + missing) from None
    if missing:
        raise DataError(missing)
    print(summary(planned))
    for line in planned.graph.warnings:
        print(f"note: {line}", file=sys.stderr)
    return 0
