"""The package layers hold: the import-linter contract in pyproject.toml passes, and an upward import breaks it.

Layers, top to bottom: cli > bench > runtime > planner > backbones | heads | data > kernels > spec > errors
(`[tool.importlinter]` in pyproject.toml says why each sits where it does).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("importlinter", reason="import-linter is a test dependency: pip install -e '.[test]'")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the `ftengine` package found in `root` with the repo's contract."""
    code = ("import sys; from importlinter.cli import lint_imports_command as c; "
            "sys.argv = ['lint-imports', sys.argv[1], '--no-cache']; c()")
    return subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml")], cwd=root, text=True,
                          capture_output=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)


def copy_package(dest: Path) -> Path:
    shutil.copytree(REPO / "ftengine", dest / "ftengine", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return dest


def test_layers_contract_is_kept() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "upward"), [
    ("spec/__init__.py", "ftengine.runtime"),      # the data-only spec must not see the runtime
    ("kernels/ops.py", "ftengine.planner"),        # the kernels are the ground floor above spec
    ("runtime/loop.py", "ftengine.cli"),            # the runtime never reaches back into the CLI
    ("runtime/run.py", "ftengine.bench"),           # nothing in the engine imports the benchmark harness
])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    root = copy_package(tmp_path)
    target = root / "ftengine" / module
    target.write_text(target.read_text() + f"\nimport {upward}  # deliberate upward import\n")
    result = lint(root)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout or "broken" in result.stdout
    assert upward in result.stdout


def import_cycles(package: str) -> list[list[str]]:
    """Strongly connected components of more than one module in `package`'s import graph (Tarjan)."""
    import grimp  # import-linter's own graph builder

    graph = grimp.build_graph(package, cache_dir=None)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    # Function-local imports count too: a cycle hidden inside a function is still a cycle in the design.
    assert import_cycles("ftengine") == []
