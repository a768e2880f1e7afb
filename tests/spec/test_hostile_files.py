"""Hostile spec files: alias bombs, huge or deep files, binary bytes. Each is refused at once with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_helpers import SPEC

from ftengine.errors import SpecError
from ftengine.spec import load_spec
from ftengine.spec.loader import MAX_SPEC_BYTES

# The classic "billion laughs": 9 ** 9 = 387 million strings once expanded, 10 lines on disk.
BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
backbone: {kind: module, factory: "m:f", kwargs: {x: *i}}
"""


def _error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    line, = err.value.problems
    return line


def test_billion_laughs_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert _error(path) == (f"{path}:2:8: YAML aliases are not accepted in spec files (got alias '*a'); "
                            "write the value out where it is used")


def test_anchor_without_alias_is_harmless_and_accepted(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + "training: &t {epochs: 2}\n")
    assert load_spec(path).training.epochs == 2


def test_alias_in_an_override_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    bomb = "[&a [1, 1, 1, 1, 1, 1, 1, 1], [*a, *a, *a, *a, *a, *a, *a, *a]]"
    assert load_spec(path, [f"description={bomb}"]).description == bomb


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(SPEC + "description: " + "x" * MAX_SPEC_BYTES + "\n")
    assert _error(path) == (f"{path}: spec file is too large (got more than 1,048,576 bytes); a spec must be at "
                            "most 1 MiB: keep data in data files and name them in the spec")
    path.write_text(SPEC + "description: " + "x" * (MAX_SPEC_BYTES - len(SPEC) - 20) + "\n")
    assert load_spec(path).description.startswith("xxx")


@pytest.mark.parametrize("name, text", [
    ("deep.yaml", "backbone: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep.json", '{"backbone": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep65.yaml", "backbone: " + "[" * 65 + "]" * 65 + "\n"),
])
def test_deep_nesting_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert _error(path) == (f"{path}: nesting is too deep (got more than 64 levels of mappings and lists); "
                            "a spec nests only a few levels: fix the file")


def test_binary_and_folder_are_named(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"backbone: \x1b\xff\x00")
    assert _error(path) == f"{path}: not UTF-8 text (got byte 0xff at offset 11); save the spec as UTF-8"
    folder = tmp_path / "specs.yaml"
    folder.mkdir()
    assert _error(folder) == (f"{folder}: is a folder, not a spec file (got a directory); "
                              "name the .yaml or .json file in it")
