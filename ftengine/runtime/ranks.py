"""A data-parallel run's per-rank decisions: the batch split, threads per rank, each rank's random stream, and
what `distributed.json` records."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from ftengine.errors import SpecError
from ftengine.runtime.distributed import World
from ftengine.runtime.progress import Console
from ftengine.runtime.seeding import derived_seed, restore_rng, seed_everything
from ftengine.spec import Spec

if TYPE_CHECKING:
    from ftengine.runtime.loop import Trainer


def check_world(spec: Spec, world: World) -> None:
    """A data-parallel run splits each global batch evenly over the ranks.

    Raises:
        SpecError: `training.batch_size` is not a multiple of the world size.
    """
    size = spec.training.batch_size
    if size % world.size:
        raise SpecError(f"training.batch_size: {size} examples per batch do not split over {world.size} processes "
                        f"(the batch size is the global batch, shared by every process); use a multiple of "
                        f"{world.size}, e.g. {max(world.size, size - size % world.size)}, or start "
                        f"{_divisors(size)} processes")


def world_threads(world: World, device: torch.device) -> int | None:
    """Intra-op threads of a data-parallel CPU rank when the spec gives none: the machine's cores shared by its
    ranks (torchrun would leave each at 1 thread); None (torch's choice) otherwise."""
    if not world.distributed or device.type != "cpu":
        return None
    return max(1, (os.cpu_count() or 1) // world.local_size)


def _divisors(n: int) -> str:
    options = [str(d) for d in range(2, min(n, 64) + 1) if n % d == 0][:6]
    return " or ".join(options) if options else "1 process"


def seed_ranks(state: dict[str, Any] | None, world: World, seed: int, console: Console) -> None:
    """The random state training starts from: the checkpoint's (each rank its own), or, on a fresh run, the
    one-process state on rank 0 and a stream derived from (seed, rank) on the others (dropout differs per rank)."""
    saved = state.get("rank_rng") if state is not None else None
    if saved is not None and len(saved) == world.size:
        restore_rng(saved[world.rank])
        return
    if state is not None and world.rank == 0:
        restore_rng(state["rng"])
    if not world.distributed or world.rank == 0:
        if state is not None and int(state.get("world_size", 1)) != world.size:
            console.line(f"resuming a {state.get('world_size', 1)}-process run with {world.size}: the global batch, "
                         "its order and the optimizer state carry over; each rank's dropout draws start afresh")
        return
    step = int(state["progress"]["global_step"]) if state is not None else 0
    seed_everything(derived_seed(seed, world.rank, step))


def distributed_record(trainer: Trainer, world: World) -> dict[str, Any]:
    """distributed.json: who ran, and what the ranks exchanged (bytes per purpose, from rank 0's counters)."""
    return {"world_size": world.size, "backend": world.backend, "stages": trainer.stage_checksums,
            "bytes_sent": dict(world.sent), "optimizer_steps": trainer.pos.global_step}
