"""Pieces shared by the bench suites: the environment record, a progress bar that keeps printed lines whole,
spread figures, the git commit, the charts' pyplot."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[2]


def echo(line: str) -> None:
    """Print a result line now (stdout may be a pipe: no buffering behind a long suite)."""
    print(line, flush=True)


class BenchProgress:
    """A tqdm bar on stderr over a suite's cases; ``log`` lines are printed above it, never through it.

    Args:
        total: number of cases or runs.
        desc: the bar's label (the suite's name).
        log: where result lines go (stdout or stderr: the bar is cleared while a line is written either way).
        enabled: draw the bar; default: only when stderr is a terminal (no bar in logs or CI output).
    """

    def __init__(self, total: int, desc: str, log: Callable[[str], None] = echo, *, unit: str = "case",
                 enabled: bool | None = None) -> None:
        self._log = log
        self._bar: Any = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)

    def log(self, line: str) -> None:
        """Print a result line with the bar cleared first and redrawn below it."""
        if self._bar is None:
            self._log(line)
            return
        with self._bar.external_write_mode(file=sys.stderr):
            self._log(line)

    def start(self, name: str) -> None:
        """Show which case runs now."""
        if self._bar is not None:
            self._bar.set_postfix_str(name, refresh=True)

    def done(self, n: int = 1) -> None:
        """Count ``n`` finished cases."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def progress(total: int, desc: str, log: Callable[[str], None] = echo, *, unit: str = "case",
             enabled: bool | None = None) -> Iterator[BenchProgress]:
    """A BenchProgress closed (bar removed) when the block ends, also on an error."""
    bar = BenchProgress(total, desc, log, unit=unit, enabled=enabled)
    try:
        yield bar
    finally:
        bar.close()


def spread(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """min / median / max / n of a figure over repeats (the result files' shape for every repeated figure)."""
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def git_commit() -> str | None:
    """Short commit of this checkout (None when ftengine is not run from a git checkout)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    fallback = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), fallback)
    except OSError:
        return fallback


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str, threads: int | None = None) -> dict[str, Any]:
    """Device, CPU/GPU model, versions, threads, kernel backend, git commit, load and date: what a reader needs to
    judge a result file's numbers (every suite records this same dict).

    Args:
        device: where the suite ran ("cpu", "cuda:0").
        threads: torch threads of the measured code when it runs elsewhere (e2e's worker processes); default:
            this process's.
    """
    import torch

    from ftengine import __version__
    from ftengine.kernels import backend_info

    dev = torch.device(device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    cpu = cpu_model()
    return dict(device=str(dev), device_name=gpu or cpu, cpu=cpu, gpu=gpu, cpu_count=os.cpu_count(),
                torch_threads=threads or torch.get_num_threads(), python=platform.python_version(),
                torch=torch.__version__, torch_cuda=torch.version.cuda, driver=cuda_driver() if gpu else None,
                transformers=_version("transformers"), numpy=_version("numpy"),
                ftengine=__version__, backend=backend_info(), git_commit=git_commit(), loadavg=loadavg(),
                date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def cuda_driver() -> str | None:
    """The NVIDIA driver version (from nvidia-smi; None where it is not installed or does not answer)."""
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else None


def loadavg() -> tuple[float, float, float] | None:
    """1/5/15-minute load averages (how busy the shared machine was), None where the OS has none."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def sync(device: str | torch.device) -> None:
    """Wait until ``device`` has run its queued work, so that a clock read next covers that work (CUDA runs
    asynchronously; nothing to wait for on the CPU)."""
    import torch  # here: this module stays torch-free for the suites' parent processes

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (charts are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_chart(fig: Any, out: Path, title: str) -> None:
    """Title, lay out and write a suite's chart as PNG, then free it."""
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    pyplot().close(fig)

