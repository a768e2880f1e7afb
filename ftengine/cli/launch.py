"""`ftengine run SPEC --nproc N`: the same run on N data-parallel processes of this machine, started by
PyTorch's elastic launcher (`torch.distributed.run`, what `torchrun` is), never by a launcher of our own.

It is exactly `torchrun --standalone --nproc_per_node N -m ftengine run SPEC ...`; for several machines use
torchrun itself (`--nnodes`, `--rdzv-endpoint`), with the same spec. The spec is loaded and checked here first,
so a mistake in it stops with exit 2 before any process starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ftengine.errors import RunError
from ftengine.runtime.interrupts import Interrupted

# How a worker's exit status maps to the launcher's: a bad spec stays 2, Ctrl-C stays 130, anything else is 1.
_PASSED_THROUGH = (2, 130)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The `ftengine run` arguments every process gets: the command line without `--nproc`."""
    argv = ["run"]
    if args.spec is not None:
        argv.append(str(args.spec))
    argv += [str(o) for o in args.overrides]
    if args.resume is True:
        argv.append("--resume")
    elif args.resume:
        argv += ["--resume", str(args.resume)]
    if args.quiet:
        argv.append("--quiet")
    for package in getattr(args, "allow_module", None) or ():
        argv += ["--allow-module", package]
    if getattr(args, "trust_remote_code", False):
        argv.append("--trust-remote-code")
    return argv


def launcher_argv(nproc: int, worker: list[str]) -> list[str]:
    """`torch.distributed.run` arguments for one machine with `nproc` processes."""
    return ["--standalone", f"--nproc_per_node={nproc}", "--max_restarts=0", "-m", "ftengine", *worker]


def launch(args: argparse.Namespace, run_dir: str) -> int:
    """Start the run on `args.nproc` processes and wait for them; returns the exit status.

    Raises:
        RunError: a process failed (names the ranks and their exit codes, and how to resume).
        Interrupted: Ctrl-C (rank 0 has checkpointed; exit 130).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    nproc = args.nproc
    resume = f"ftengine run --resume {run_dir} --nproc {nproc}"
    try:
        run(parse_args(launcher_argv(nproc, worker_argv(args))))
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        worst = max((c for c in codes.values() if c in _PASSED_THROUGH), default=1)
        if worst == 130:
            raise Interrupted(f"ftengine: interrupted; rank 0 saved a checkpoint in {run_dir}; continue with: "
                              f"{resume}") from None
        if worst == 2:
            return 2  # each rank printed the problem in the spec
        failed = ", ".join(f"rank {r} (exit {_describe(c)})" for r, c in sorted(codes.items()))
        raise RunError(f"ftengine run --nproc {nproc}: {failed} failed (its message is above); the last checkpoint "
                       f"is kept: continue with: {resume}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"ftengine: interrupted; continue with: {resume}") from None
    except Exception as exc:  # the launcher itself (a signal, a rendezvous problem)
        if type(exc).__name__ == "SignalException":
            raise Interrupted(f"ftengine: interrupted; continue with: {resume}") from None
        raise
    return 0


def _describe(code: Any) -> str:
    if isinstance(code, int) and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)


def check_nproc(nproc: int) -> None:
    """--nproc must be a positive process count."""
    if nproc < 1:
        raise RunError(f"--nproc: the number of processes must be at least 1 (got {nproc}); e.g. --nproc 2")
    if sys.platform == "win32":
        raise RunError("--nproc: data-parallel runs need torch.distributed's launcher, which does not support "
                       "Windows; run in one process (leave out --nproc)")
