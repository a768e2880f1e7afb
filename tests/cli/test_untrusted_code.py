"""Code named by a spec runs only when the user allows its package: refused runs leave nothing behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ftengine.backbones.trust import ENV_MODULES

# A harmless factory in its own package; importing it leaves a mark so a test can see whether it ran.
TINY = """
from pathlib import Path
from torch import nn
Path(__file__).with_name("IMPORTED").touch()


def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""

SPEC = """\
backbone: {kind: module, factory: "ftengine_tiny_factory:make", image_size: 8}
head: {kind: linear, pooling: avg}
data: {kind: sklearn_digits, image_size: 8, limit: 200}
freeze: {preset: full_finetune}
training: {epochs: 1, batch_size: 32, max_steps: 2}
output: {plots: false}
"""
REFUSED = ("backbone.factory: 'ftengine_tiny_factory:make' would run code from package 'ftengine_tiny_factory', "
           "which is not allowed (got factory 'ftengine_tiny_factory:make'); if you trust it, run with "
           "--allow-module ftengine_tiny_factory or set FTENGINE_ALLOW_MODULES=ftengine_tiny_factory")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(spec file, import mark) in a fresh working directory with `ftengine_tiny_factory` importable."""
    package = tmp_path / "lib" / "ftengine_tiny_factory"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.delenv(ENV_MODULES, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(SPEC)
    yield tmp_path / "tiny.yaml", package / "IMPORTED"
    sys.modules.pop("ftengine_tiny_factory", None)


def test_run_without_allowance_exits_2_before_anything(cli, workdir: tuple[Path, Path]) -> None:
    spec, mark = workdir
    result = cli("run", spec, "--quiet")
    assert (result.code, result.out, result.err) == (2, "", f"{spec}: {REFUSED}\n")
    assert not mark.exists() and not (spec.parent / "runs").exists()


def test_validate_and_plan_with_allowance_build_the_structure(cli, workdir: tuple[Path, Path]) -> None:
    spec, mark = workdir
    result = cli("validate", spec, "--allow-module", "ftengine_tiny_factory")
    assert result.code == 0 and result.out.startswith(f"ok: {spec}: ")
    assert "not checked" not in result.out and mark.exists()
    assert cli("plan", spec, "--allow-module", "ftengine_tiny_factory").code == 0


def test_run_and_eval_with_flag_or_environment(cli, workdir: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec, mark = workdir
    result = cli("run", spec, "--quiet", "--allow-module", "ftengine_tiny_factory")
    assert result.code == 0, result.err
    run_dir = spec.parent / "runs" / "tiny"
    assert (run_dir / "model").is_dir() and mark.exists()
    # The run directory's spec names the same factory: eval rebuilds it and needs the same allowance.
    result = cli("eval", run_dir)
    assert (result.code, result.err) == (2, REFUSED + "\n")
    assert cli("eval", run_dir, "--allow-module", "ftengine_tiny_factory").code == 0
    monkeypatch.setenv(ENV_MODULES, "numpy,ftengine_tiny_factory")
    assert cli("eval", run_dir, "--json").code == 0
