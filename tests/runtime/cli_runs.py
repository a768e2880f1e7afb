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


def free_port() -> int:
    """A TCP port nobody listens on now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ftengine_ranks(*args: str, nproc: int, cache: Path, timeout: float = 60) -> list[subprocess.Popen]:
    """`python -m ftengine run ARGS` as `nproc` data-parallel processes on this machine, with the environment
    torchrun gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, ... and a rendezvous address), but no agent: a test
    can kill one rank and watch what the others do."""
    port = free_port()
    procs = []
    for rank in range(nproc):
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "FTENGINE_CACHE_DIR": str(cache),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
               "FTENGINE_DIST_TIMEOUT": str(timeout), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "ftengine", "run", *args], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs
