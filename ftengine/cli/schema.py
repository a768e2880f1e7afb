"""`ftengine schema`: the JSON Schema of spec files, for editor completion and checking."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftengine.cli._common import formatter

EPILOG = """\
examples:
  ftengine schema > ftengine.schema.json
  ftengine schema --output .vscode/ftengine.schema.json

Point your editor at the file:
  YAML (VS Code YAML extension, any yaml-language-server editor): first line of the spec
      # yaml-language-server: $schema=./ftengine.schema.json
    or in settings.json: "yaml.schemas": {"./ftengine.schema.json": "specs/*.yaml"}
  JSON: a top-level key in the spec (ftengine ignores it)
      "$schema": "./ftengine.schema.json"
Field descriptions come from the spec models' docstrings, so hovering a key explains it.
"""

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `schema` command."""
    parser = subparsers.add_parser(
        "schema", help="print the JSON Schema of spec files (for editors)",
        description="Print the JSON Schema of ftengine spec files.", epilog=EPILOG, formatter_class=formatter())
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")


def spec_schema() -> dict:
    """The Spec model's JSON Schema with the dialect and a `$schema` property allowed at the top."""
    from ftengine.spec import Spec

    schema = {"$schema": _DIALECT, **Spec.model_json_schema()}
    # Spec files may carry their own `$schema` pointer (the loader drops it before validation).
    schema.setdefault("properties", {})["$schema"] = {"type": "string", "description": "Editor schema pointer (ignored)."}
    return schema


def main(args: argparse.Namespace) -> int:
    """Print or write the schema."""
    text = json.dumps(spec_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0
