"""The dispatcher: help, exit codes, error printing, --debug, and command modules that are missing or broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ftengine.cli as cli_pkg
from ftengine.errors import RunError, SpecError

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_commands_with_examples(cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for command in ("validate", "plan", "schema", "info", "run"):
        assert f"    {command} " in result.out
    assert "ftengine validate specs/" in result.out


@pytest.mark.parametrize("command", ["validate", "plan", "schema", "info", "run"])
def test_every_command_has_examples_in_its_help(cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert "examples:\n  ftengine " + command in result.out


def test_usage_errors_exit_2(cli) -> None:
    assert cli().code == 2
    result = cli("frobnicate")
    assert result.code == 2 and "invalid choice: 'frobnicate'" in result.err


def test_version(cli) -> None:
    from ftengine import __version__

    assert cli("--version").out.strip() == f"ftengine {__version__}"


def _fake_command(monkeypatch: pytest.MonkeyPatch, body) -> None:
    """Replace `schema`'s main with `body` (the dispatcher looks main up at registration)."""
    import ftengine.cli.schema as schema

    monkeypatch.setattr(schema, "main", body)


def test_user_errors_print_their_lines_and_exit_with_their_code(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args):
        raise SpecError(["a.yaml: optimizer.lr: out of range (got -1); use a value > 0", "a.yaml: second problem"])

    _fake_command(monkeypatch, fail)
    result = cli("schema")
    assert (result.code, result.out) == (2, "")
    assert result.err == "a.yaml: optimizer.lr: out of range (got -1); use a value > 0\na.yaml: second problem\n"

    _fake_command(monkeypatch, lambda args: (_ for _ in ()).throw(RunError("cuda:1: no such device; use cuda:0")))
    assert cli("schema") == (1, "", "cuda:1: no such device; use cuda:0\n")


def test_debug_reraises_user_errors(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, lambda args: (_ for _ in ()).throw(SpecError("x: bad")))
    with pytest.raises(SpecError):
        cli("--debug", "schema")
    with pytest.raises(SpecError):
        cli("schema", "--debug")


def test_bugs_show_their_traceback(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, lambda args: {}["missing"])
    result = cli("schema")
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err and "KeyError: 'missing'" in result.err
    assert "internal error (a bug, not a problem with your spec)" in result.err


def test_keyboard_interrupt_exits_130(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli("schema") == (130, "", "ftengine: interrupted\n")


def test_a_command_module_that_fails_to_import_is_a_bug(cli, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    broken = tmp_path / "broken_cmd.py"
    broken.write_text("import not_a_real_module_xyz\n")
    monkeypatch.setattr(cli_pkg, "__path__", [*cli_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(cli_pkg, "COMMANDS", ("schema", "broken_cmd"))
    result = cli("schema")
    assert result.code == 1
    assert "ModuleNotFoundError: No module named 'not_a_real_module_xyz'" in result.err


def test_schema_has_docstring_descriptions(cli, tmp_path) -> None:
    result = cli("schema")
    schema = json.loads(result.out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"backbone", "data"}
    optimizer = schema["$defs"]["OptimizerSpec"]["properties"]
    assert optimizer["lr"]["description"] == "Base learning rate of the backbone's top group."
    out = tmp_path / "s.json"
    assert cli("schema", "--output", out).code == 0
    assert json.loads(out.read_text()) == schema


def test_info_reports_versions_devices_and_kernels(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    data = json.loads(cli("info", "--json").out)
    assert data["packages"]["torch"] == torch.__version__.split("+")[0]
    assert data["devices"]["cuda_available"] == torch.cuda.is_available()
    assert data["kernels"]["active"] in ("native-cuda", "native-cpu", "reference")
    text = cli("info").out
    assert text.startswith("ftengine     ") and "\nkernels      " in text
    assert data["distributed"]["world_size"] == 1 and "\ndistributed  1 process" in text
    # under torchrun it shows the world this process is part of, and the backend a run would use
    for key, value in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(key, value)
    dist = json.loads(cli("info", "--json").out)["distributed"]
    assert (dist["world_size"], dist["rank"], dist["backend"]) == (2, 1, "nccl" if torch.cuda.is_available() else "gloo")
    assert "distributed  2 processes, this is rank 1" in cli("info").out
    # without the kernels package, info still works and says so
    monkeypatch.setitem(sys.modules, "ftengine.kernels", None)
    assert "kernels      unavailable (ftengine.kernels is not part of this build)" in cli("info").out


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from ftengine.cli import main; rc = main(['--help']); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
