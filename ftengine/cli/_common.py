"""Helpers shared by the spec-taking commands: arguments, loading, building the structure, planning."""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftengine.errors import FtengineError, PlanError, SpecError

OVERRIDES_HELP = ("overrides applied before validation, value read as YAML: training.epochs=1 optimizer.lr=3e-5 "
                  "freeze.stages[1].epochs=2")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """`SPEC [KEY=VALUE ...]` positionals."""
    parser.add_argument("spec", metavar="SPEC", help="spec file (.yaml, .yml or .json)")
    parser.add_argument("overrides", metavar="KEY=VALUE", nargs="*", help=OVERRIDES_HELP)


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """`--allow-module PKG` (repeatable) and `--trust-remote-code`: the code a spec may run."""
    parser.add_argument("--allow-module", action="append", default=[], metavar="PKG",
                        help="let a module backbone's factory or adapter from package PKG run (repeatable; "
                             "also FTENGINE_ALLOW_MODULES=pkg1,pkg2)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let an hf backbone with trust_remote_code: true run the model's own code "
                             "(also FTENGINE_TRUST_REMOTE_CODE=1)")


@contextmanager
def trusted(args: argparse.Namespace) -> Iterator[None]:
    """Inside the block, the code the command's --allow-module / --trust-remote-code flags allow may run."""
    from ftengine.backbones.trust import allowing

    with allowing(getattr(args, "allow_module", None) or (), bool(getattr(args, "trust_remote_code", False))):
        yield


def formatter() -> type[argparse.HelpFormatter]:
    """Keep the examples in epilogs as written."""
    return argparse.RawDescriptionHelpFormatter


@dataclass(frozen=True)
class Planned:
    """A loaded spec, its backbone structure (meta device, no weights) and its execution graph."""

    path: Path
    spec: Any
    backbone: Any
    graph: Any


def _prefixed(err: FtengineError, path: Path) -> FtengineError:
    """The same error with every line starting `file: ` (spec-loader lines already do)."""
    lines = [line if line.startswith(str(path)) else f"{path}: {line}" for line in err.problems]
    prefixed = copy.copy(err)  # keeps the type and its extra attributes (UntrustedCodeError's hint)
    prefixed.problems, prefixed.args = lines, ("\n".join(lines),)
    return prefixed


def load(spec_path: str, overrides: list[str]) -> tuple[Path, Any]:
    """Read, override and validate the spec file (SpecError lines already name the file)."""
    from ftengine.spec import load_spec

    path = Path(spec_path)
    return path, load_spec(path, overrides)


def structure_and_plan(path: Path, spec: Any) -> Planned:
    """Build the backbone structure on the meta device (no weights read) and plan.

    Raises:
        SpecError, PlanError: every problem, one line each, prefixed with the spec file.
        UntrustedCodeError: the structure would need code the user has not allowed (nothing was imported).
    """
    # Offline-friendly: never reach for a model hub while only reading structure.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from ftengine.backbones import build_backbone
        from ftengine.planner import plan

        backbone = build_backbone(spec.backbone, pretrained=False, device="meta", base_dir=path.parent)
        if spec.adapters is not None:  # peft loads only for specs with adapters
            from ftengine.runtime.adapters import attach_adapters

            attach_adapters(backbone, spec.adapters)
        graph = plan(spec, backbone)
    except (SpecError, PlanError) as err:
        raise _prefixed(err, path) from None
    return Planned(path, spec, backbone, graph)


def load_and_plan(spec_path: str, overrides: list[str]) -> Planned:
    """`load` then `structure_and_plan`."""
    return structure_and_plan(*load(spec_path, overrides))
