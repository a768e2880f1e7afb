"""Data-parallel runs on torch.distributed: which process this is, and the few collectives a run makes.

A run started by ``torchrun`` (or ``ftengine run --nproc N``, which starts ``torch.distributed.run``) finds
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` in its environment; without
them it is one process, ``World.solo()``, and every collective below returns its input untouched. There is
no ``DistributedDataParallel``: the gradient all-reduce is ftengine's own (``runtime.grad_sync``), over the
trainable slice of the flat gradient buffer.

Every collective has a timeout (``FTENGINE_DIST_TIMEOUT`` seconds, default 300) and turns a failure (a peer
that died, hung or was stopped) into a one-line ``RunError`` that says how to resume, so no rank waits forever.
Bytes sent are counted per purpose (``sent``): the benchmark and the tests read them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from ftengine.errors import FtengineError, RunError

TIMEOUT_ENV = "FTENGINE_DIST_TIMEOUT"
BACKEND_ENV = "FTENGINE_DIST_BACKEND"
DEFAULT_TIMEOUT_S = 300.0


class PeerLost(RunError):
    """A collective failed: another rank died, hung past the timeout, or was stopped."""


@dataclass
class World:
    """This process's place in a data-parallel run (one process: rank 0 of 1, no backend).

    Attributes:
        rank: global rank, 0 .. size-1; rank 0 writes the run directory.
        size: processes in the run (the world size).
        local_rank: rank on this node (picks the GPU, and the share of the cache fill).
        local_size: processes on this node.
        node: this node's index (torchrun's group rank).
        backend: "gloo" (CPU) or "nccl" (CUDA) once started; None for one process.
        timeout: seconds a collective waits for its peers.
        sent: bytes this rank contributed to collectives, per purpose ("grads", "control", "params", ...).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    node: int = 0
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    sent: Counter = field(default_factory=Counter)

    @classmethod
    def solo(cls) -> World:
        """One process: no collectives."""
        return cls()

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun describes in the environment (one process when it describes none)."""
        env = os.environ
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return cls.solo()
        try:
            size, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
            local_rank = int(env.get("LOCAL_RANK", rank))
            local_size = int(env.get("LOCAL_WORLD_SIZE", size))
            node = int(env.get("GROUP_RANK", 0))
            timeout = float(env.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        except ValueError as exc:
            raise RunError(f"distributed: the launcher's environment is malformed ({exc}); start the run with "
                           "torchrun or `ftengine run SPEC --nproc N`") from None
        if not 0 <= rank < size:
            raise RunError(f"distributed: RANK={rank} is outside WORLD_SIZE={size}; start the run with torchrun")
        return cls(rank=rank, size=size, local_rank=local_rank, local_size=local_size, node=node, timeout=timeout)

    @property
    def distributed(self) -> bool:
        """Whether collectives run (more than one process)."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``cuda:<local_rank>``) for a CUDA run."""
        if not self.distributed or device.type != "cuda":
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise RunError(f"distributed: local rank {self.local_rank} needs a GPU of its own but this node has "
                           f"{count}; start at most {count} processes per node (--nproc {count}) or train on the "
                           "CPU (training.device=cpu)")
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL for a CUDA device, gloo for the CPU (``FTENGINE_DIST_BACKEND`` overrides)."""
        if not self.distributed or self.backend is not None:
            return
        import torch.distributed as dist

        backend = os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
        if backend == "nccl" and (not torch.cuda.is_available() or not dist.is_nccl_available()):
            raise RunError("distributed: the NCCL backend needs CUDA GPUs and an NCCL build of PyTorch, and this "
                           "machine has none; train on the CPU with training.device=cpu (gloo), or unset "
                           f"{BACKEND_ENV}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        with self._collective("joining the process group"):
            dist.init_process_group(backend, timeout=timedelta(seconds=self.timeout),
                                    device_id=device if device.type == "cuda" else None)
        self.backend = backend

    def close(self) -> None:
        """Leave the process group (a no-op for one process)."""
        if self.backend is not None:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()
            self.backend = None

    def describe(self) -> str:
        """One line for the run log."""
        if not self.distributed:
            return "1 process"
        return (f"{self.size} processes ({self.backend}), rank {self.rank} on node {self.node} "
                f"(local rank {self.local_rank} of {self.local_size})")

    # --- collectives (identity for one process) -------------------------------------------------------------

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:  # DistBackendError, DistNetworkError, gloo/NCCL timeouts
            if isinstance(exc, RunError):
                raise
            first = _first_sentence(str(exc)) or type(exc).__name__
            peers = f"rank {1 - self.rank}" if self.size == 2 else "another rank"
            raise PeerLost(f"distributed: rank {self.rank} of {self.size}: {what} failed ({first}); {peers} has "
                           f"died, hung for over {self.timeout:.0f}s or was stopped; the run directory keeps the last "
                           "checkpoint: start every rank again with --resume (`ftengine run SPEC --resume --nproc "
                           f"{self.size}`, or your torchrun command with --resume)") from None

    def barrier(self, what: str = "waiting for every rank") -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            import torch.distributed as dist

            with self._collective(what):
                dist.barrier()

    def all_reduce_(self, tensor: torch.Tensor, *, op: str = "sum", purpose: str = "control",
                    what: str = "an all-reduce") -> torch.Tensor:
        """Reduce ``tensor`` in place over every rank ("sum", "max" or "min"); returns it."""
        if not self.distributed or tensor.numel() == 0:
            return tensor
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        self.sent[purpose] += tensor.numel() * tensor.element_size()
        with self._collective(what):
            dist.all_reduce(tensor, op=ops[op])
        return tensor

    def broadcast_(self, tensor: torch.Tensor, *, purpose: str = "params", what: str = "a broadcast") -> torch.Tensor:
        """Overwrite ``tensor`` with rank 0's; returns it."""
        if not self.distributed or tensor.numel() == 0:
            return tensor
        import torch.distributed as dist

        if self.main:
            self.sent[purpose] += tensor.numel() * tensor.element_size()
        with self._collective(what):
            dist.broadcast(tensor, src=0)
        return tensor

    def gather_objects(self, obj: Any, *, what: str = "gathering results") -> list[Any]:
        """Every rank's ``obj``, in rank order (picklable objects; small ones)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        with self._collective(what):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, *, what: str = "sharing a decision") -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        with self._collective(what):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    # --- model consistency ---------------------------------------------------------------------------------

    @torch.no_grad()
    def broadcast_model(self, model: nn.Module, *, buffers_only: bool = False) -> None:
        """Make every rank's parameters (and buffers) rank 0's, tensor by tensor."""
        if not self.distributed:
            return
        tensors = [] if buffers_only else [p.data for p in model.parameters()]
        tensors += [b for b in model.buffers()]
        for t in tensors:
            self.broadcast_(t, purpose="buffers" if buffers_only else "params", what="sharing the model")

    @torch.no_grad()
    def check_same_model(self, model: nn.Module, where: str) -> list[float]:
        """Every rank's parameter checksum (rank order); raises when they differ (the replicas drifted)."""
        total = torch.zeros((), dtype=torch.float64)
        for i, p in enumerate(model.parameters()):
            total += p.detach().double().sum().cpu() * (1 + (i % 7) * 1e-3)  # position-weighted: a swap shows
        sums = [float(s) for s in self.gather_objects(float(total), what=f"comparing the model at {where}")]
        if any(s != sums[0] for s in sums):
            raise RunError(f"distributed: {where}: the ranks' parameters differ (checksums {sums}); this is a bug in "
                           "ftengine's data-parallel training; please report it with the spec")
        return sums

    def decide(self, decision: Callable[[], Any], what: str) -> Any:
        """Run ``decision`` on rank 0 only and give every rank its result; an ftengine error it raises is raised
        on every rank (so the others do not wait for a rank that has stopped)."""
        if not self.distributed:
            return decision()
        outcome: tuple[str, Any] = ("", None)
        if self.main:
            try:
                outcome = ("ok", decision())
            except FtengineError as exc:
                outcome = ("error", exc)
        kind, value = self.broadcast_object(outcome, what=what)
        if kind == "error":
            raise value
        return value


def _first_sentence(text: str) -> str:
    """The gist of a backend error: its first line, without the source-location prefix and the advice after it."""
    line = (text.strip().splitlines() or [""])[0]
    line = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", line)
    return line.split(". ")[0].rstrip(".")[:200]
