"""Running `ftengine run` in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ftengine_run(*args: str, cache: Path) -> subprocess.Popen:
    """`python -m ftengine run ARGS` in a child process (offline, its own activation cache folder)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "FTENGINE_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "ftengine", "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
