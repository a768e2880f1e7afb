"""The activation-cache fill of `ftengine bench ddp`: N ranks x 1 thread vs 1 process x N threads, same cores.

Both fill the frozen prefix of the recipe's stages (every cache boundary in one pass) for the same seeded subset
of the bundled tweets, through ``ActivationCache.create(..., world=)`` and ``prepare`` as a run does, into a cold
memory-mapped (disk tier) cache. Examples computed are counted by a hook on ``encoder.layer.0`` (examples
through the frozen prefix outside autograd), per rank.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ftengine.backbones import build_backbone
from ftengine.bench.cache_data import bench_spec_dict
from ftengine.data import build_data
from ftengine.planner import plan
from ftengine.runtime.cache import ActivationCache
from ftengine.runtime.distributed import World
from ftengine.spec import validate_spec

FILL_BATCH = 32


def fill_spec(source: str, examples: int, max_length: int, stages: list[list[str]], cache_dir: str) -> Any:
    """The recipe on ``examples`` tweets (90% train) with a cold, non-persistent, memory-mapped cache."""
    freeze = {"stages": [{"name": f"s{i}", "trainable": t, "epochs": 1} for i, t in enumerate(stages)]}
    cache = {"dtype": "fp32", "tier": "disk", "dir": cache_dir, "persist": False}
    return validate_spec(bench_spec_dict(examples, max_length, FILL_BATCH, freeze, cache, source),
                         source="bench:ddp-fill")


def timed_fill(spec: Any, world: World) -> dict[str, Any]:
    """Fill the cache of ``spec``'s stages on this rank (every rank of ``world`` calls it); seconds from the first
    rank's start to the last rank's end (barriers around ``prepare``), and what this rank computed."""
    backbone = build_backbone(spec.backbone, device="cpu", base_dir=Path.cwd())
    data = build_data(spec.data, backbone, Path.cwd(), seed=spec.training.seed)
    graph = plan(spec, backbone, num_classes=len(data.labels))
    computed = [0]

    def count(_module: Any, _args: Any, out: Any) -> None:
        if not torch.is_grad_enabled():  # the fill runs under no_grad
            computed[0] += (out[0] if isinstance(out, tuple) else out).shape[0]

    backbone.get_submodule("encoder.layer.0").register_forward_hook(count)
    backbone.eval()
    cache = ActivationCache.create(graph, backbone, data, device="cpu", world=world)
    try:
        world.barrier("starting the cache fill")
        started = time.perf_counter()
        cache.prepare(graph.cache_boundaries(), splits=("train",), batch_size=FILL_BATCH, quiet=True)
        world.barrier("finishing the cache fill")
        seconds = time.perf_counter() - started
        stats = cache.stats()
    finally:
        cache.close()
    return dict(seconds=round(seconds, 3), examples_computed=computed[0], train_examples=len(data.train),
                boundaries=graph.cache_boundaries(), tier=stats["tier"], bytes=stats["bytes"],
                filled=[dict(boundary=e["boundary"], examples=e["examples"], share=e.get("share"))
                        for e in stats.get("filled", [])])


def single_fill(spec: Any, threads: int) -> dict[str, Any]:
    """One process with ``threads`` intra-op threads (this process; its thread count is restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed_fill(spec, World.solo())
    finally:
        torch.set_num_threads(before)
