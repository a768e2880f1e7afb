"""Broken specs: one clear line per problem, exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = Path(__file__).resolve().parent / "broken"
REPO = Path(__file__).resolve().parents[2]

# Spec-level problems: found by the loader, before any model structure is built.
SPEC_PROBLEMS = {
    "unknown_keys.yaml": [
        "data.label_colum: unknown key (got 'sentiment'); did you mean 'label_column'?",
        "training.batchsize: unknown key (got 16); did you mean 'batch_size'?",
        "optimiser: unknown key (got a mapping); did you mean 'optimizer'?",
    ],
    "bad_values.yaml": [
        "data.split: validation + test fractions leave no training rows (got 0.6 + 0.5); keep the sum below 1",
        "freeze.preset: not an accepted value (got 'gradual_unfreez'); did you mean 'gradual_unfreeze'?",
        "optimizer.lr: out of range (got -0.0001); use a value > 0.0",
        "training.batch_size: out of range (got 0); use a value >= 1",
        "training.precision: not an accepted value (got 'fp8'); use one of 'auto', 'fp32', 'bf16' or 'fp16'",
    ],
    "text_on_resnet.yaml": [
        "data.kind: text data needs a text backbone (got data kind 'text' with backbone kind 'torchvision'); "
        "use backbone kind hf, or image data",
    ],
}

# Problems that need the model's structure (built on the meta device) or the file system.
PLAN_PROBLEMS = {
    "bad_selectors.yaml": [
        "freeze.stages[1].trainable: no layer group 'encoder.layer.7' (backbone has encoder.layer.0 .. "
        "encoder.layer.5); did you mean 'encoder.layer.5'?",
        "freeze.stages[2].trainable: range 'encoder.layer.4-9' reaches past the backbone: no encoder.layer.6, "
        "encoder.layer.7, encoder.layer.8 (+1 more) (backbone has encoder.layer.0 .. encoder.layer.5); "
        "did you mean 'encoder.layer.4-5'?",
        "freeze.stages[2].trainable: group 'pooler' gets no gradient: the head pools with 'mean' and never reads it "
        "(got 'pooler'); drop it, or set head.pooling: pooler",
        "freeze.stages[2].lr_multipliers['encoder.layr.5']: no layer group 'encoder.layr.5' (groups: embeddings, "
        "encoder.layer.0 .. encoder.layer.5, pooler, head); did you mean 'encoder.layer.5'?",
    ],
    "cache_on_full_finetune.yaml": [
        "cache.enabled: no stage has a frozen prefix to cache (got 'on' while every stage trains the first group, "
        "embeddings); set cache.enabled: auto, or freeze the lower groups",
    ],
    "missing_files.yaml": [
        f"data.train: no such file '{BROKEN / 'no_such_dir/train.csv'}' (got 'no_such_dir/train.csv'); fix the path "
        "(relative paths start at the spec file's folder)",
        f"data.validation: no such file '{BROKEN / 'no_such_dir/valid.csv'}' (got 'no_such_dir/valid.csv'); fix the "
        "path (relative paths start at the spec file's folder)",
    ],
}


def _check(result, path: Path, lines: list[str]) -> None:
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [f"{path}: {line}" for line in lines]


@pytest.mark.parametrize("name", sorted(SPEC_PROBLEMS))
def test_spec_problems(cli, name: str) -> None:
    path = BROKEN / name
    for command in ("validate", "plan"):
        _check(cli(command, path), path, SPEC_PROBLEMS[name])


@pytest.mark.parametrize("name", sorted(PLAN_PROBLEMS))
def test_plan_problems(cli, name: str) -> None:
    path = BROKEN / name
    _check(cli("validate", path), path, PLAN_PROBLEMS[name])


def test_yaml_syntax_error_names_line_and_column(cli) -> None:
    path = BROKEN / "yaml_syntax.yaml"
    result = cli("validate", path)
    assert result.code == 2
    assert result.err == f"{path}:5:5: invalid YAML (expected ',' or ']', but got ':'); fix the syntax there\n"


def test_missing_spec_file_and_bad_override(cli, tmp_path: Path) -> None:
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.code == 2 and result.err.startswith(f"{tmp_path / 'nope.yaml'}: spec file not found; check the path")
    result = cli("validate", BROKEN / "text_on_resnet.yaml", "training.epochs")
    assert result.err == "override 'training.epochs': expected key.path=value; e.g. training.epochs=2\n"


def test_missing_package_names_the_install(cli) -> None:
    result = cli("validate", BROKEN / "missing_package.yaml")
    assert result.code == 2
    line, = result.err.splitlines()
    assert line.startswith(f"{BROKEN / 'missing_package.yaml'}: backbone.source: ")
    assert "no_such_model_package" in line and "Traceback" not in result.err


def test_every_broken_spec_is_covered() -> None:
    covered = {*SPEC_PROBLEMS, *PLAN_PROBLEMS, "yaml_syntax.yaml", "missing_package.yaml"}
    assert {p.name for p in BROKEN.glob("*.yaml")} == covered


def test_subprocess_exit_code_and_no_traceback() -> None:
    path = BROKEN / "unknown_keys.yaml"
    proc = subprocess.run([sys.executable, "-m", "ftengine", "validate", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"{path}: {line}" for line in SPEC_PROBLEMS["unknown_keys.yaml"]]


# Data files that validate reads (headers and first rows, no weights) with the messages training gives.
DATA = BROKEN / "data"
DATA_PROBLEMS = {
    "missing_column.yaml": [
        f"data.text_column: {DATA / 'no_text_column.csv'} has no column 'text' (columns: body, label); "
        "set data.text_column to one of them",
    ],
    "empty_files.yaml": [
        f"data.train: {DATA / 'empty.csv'} has no data rows (got an empty file); add labelled rows or point at "
        "another file",
        f"data.validation: {DATA / 'header_only.csv'} has no data rows (got a header only); add labelled rows or "
        "point at another file",
    ],
    "binary.yaml": [
        f"data.train: {DATA / 'binary.csv'} looks like a binary file, not CSV/JSONL (got a NUL byte at offset 10); "
        "point data.train at a CSV, TSV or JSON-lines file",
    ],
    "folder_for_file.yaml": [
        f"data.train: {DATA / 'folder.csv'} is a folder, expected a file (got 'folder.csv'); point it at the data file",
    ],
}


@pytest.mark.parametrize("name", sorted(DATA_PROBLEMS))
def test_validate_reads_data_files(cli, name: str) -> None:
    path = DATA / name
    _check(cli("validate", path), path, DATA_PROBLEMS[name])


def test_one_class_data_stops_the_run(cli, tmp_path: Path) -> None:
    path = DATA / "one_class.yaml"
    result = cli("run", path, f"output.dir={tmp_path / 'run'}")
    assert result.code == 2
    assert result.err.splitlines()[-1] == (
        f"data.train: {DATA / 'one_class.csv'}: the training split has only one class, 'pos' (got 9 rows, all 'pos'); "
        "a classifier needs at least 2 classes: add rows with other labels")
    assert "Traceback" not in result.err


def test_every_broken_data_spec_is_covered() -> None:
    assert {p.name for p in DATA.glob("*.yaml")} == {*DATA_PROBLEMS, "one_class.yaml"}
