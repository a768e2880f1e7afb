"""Runtime fixtures: toy runs through the real `run_spec` (backbone/data/head replaced by small stand-ins)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from toy import toy_build, toy_spec  # noqa: E402


@pytest.fixture()
def toy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`toy_run(name, resume=False, **spec_sections) -> RunResult` in a temporary output folder."""
    import ftengine.runtime.run as run_module

    monkeypatch.setattr(run_module, "build", toy_build)
    monkeypatch.setenv("FTENGINE_CACHE_DIR", str(tmp_path / "cache"))

    def run(name: str = "toy", resume: bool = False, **sections: Any) -> Any:
        output = {"dir": str(tmp_path / "runs"), "name": name, "plots": False, **sections.pop("output", {})}
        spec = toy_spec(output=output, **sections)
        return run_module.run_spec(spec, tmp_path / f"{name}.yaml", resume=resume, quiet=True)

    return run
