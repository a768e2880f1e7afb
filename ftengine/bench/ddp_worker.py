"""One rank of `ftengine bench ddp`: join the gloo group, build the variants, time their steps stage by stage.

Started by ``torch.multiprocessing.spawn`` from ``ftengine.bench.ddp``; rank 0 writes every rank's figures to
``setup.out`` as JSON.
"""

from __future__ import annotations

import json
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ftengine.backbones import build_backbone
from ftengine.bench.cache_data import bench_spec_dict
from ftengine.bench.ddp_setup import NUM_CLASSES, Setup
from ftengine.bench.ddp_fill import fill_spec, timed_fill
from ftengine.bench.ddp_variants import Variant, build_variant, checksum
from ftengine.heads import build_head
from ftengine.planner import plan
from ftengine.runtime.distributed import World
from ftengine.runtime.model import FineTuneModel
from ftengine.runtime.seeding import seed_everything
from ftengine.spec import validate_spec


def bench_spec(setup: Setup) -> Any:
    """The recipe as a spec: one epoch per stage (unused: the bench counts steps), no activation cache."""
    stages = [{"name": name, "trainable": trainable, "epochs": 1}
              for name, trainable in zip(("head", "top1", "top3"), setup.stages, strict=True)]
    return validate_spec(bench_spec_dict(setup.batch_size, setup.max_length, setup.batch_size, {"stages": stages},
                                         {"enabled": "off"}, setup.source), source="bench:ddp")


def build(name: str, spec: Any, world: World) -> Variant:
    """A fresh model (same seed on every rank and for every variant), its plan, and the variant around it."""
    seed_everything(spec.training.seed)
    backbone = build_backbone(spec.backbone, device="cpu", base_dir=Path.cwd())
    graph = plan(spec, backbone, num_classes=NUM_CLASSES)
    model = FineTuneModel(backbone, build_head(spec.head, backbone, NUM_CLASSES))
    return build_variant(name, model, graph, spec, world)


def make_batches(setup: Setup, rank: int, count: int = 4) -> list[dict[str, torch.Tensor]]:
    """``count`` fixed batches of this rank's share: random token ids and labels (seeded by rank)."""
    gen = torch.Generator().manual_seed(setup.seed * 1000 + rank)
    n, length = setup.batch_size // setup.nproc, setup.max_length
    return [{"input_ids": torch.randint(1, setup.vocab, (n, length), generator=gen),
             "attention_mask": torch.ones(n, length, dtype=torch.long),
             "token_type_ids": torch.zeros(n, length, dtype=torch.long),
             "labels": torch.randint(0, NUM_CLASSES, (n,), generator=gen)} for _ in range(count)]


def time_stage(variant: Variant, stage: Any, batches: list[dict[str, torch.Tensor]], setup: Setup) -> dict[str, Any]:
    """Enter ``stage`` and run its steps; per step: seconds and gradient bytes all-reduced by this rank."""
    variant.enter(stage)
    seconds, grads, control = [], [], variant.control_bytes()
    for i in range(setup.steps):
        before = variant.grad_bytes()
        started = time.perf_counter()
        variant.step(batches[i % len(batches)], setup.batch_size)
        seconds.append(time.perf_counter() - started)
        grads.append(variant.grad_bytes() - before)
    trainable = [p for p in variant.model.parameters() if p.requires_grad]  # ddp-lr0: every parameter
    return dict(name=stage.name, trainable=list(stage.trainable), step_seconds=seconds, grad_bytes_per_step=grads,
                trainable_tensors=len(trainable), trainable_param_bytes=sum(p.numel() * p.element_size()
                                                                            for p in trainable),
                control_bytes_per_step=(variant.control_bytes() - control) // setup.steps,
                expected_bytes=variant.expected_bytes(),
                wrap_seconds=round(variant.wrap_seconds[-1], 4) if variant.wrap_seconds else None)


def rank_main(rank: int, setup: Setup) -> None:
    """Entry point of a spawned rank."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # find_unused_parameters=True on a stage that uses every trainable parameter warns at every wrap: expected here.
    warnings.filterwarnings("ignore", message=".*find_unused_parameters=True.*")
    dist.init_process_group("gloo", rank=rank, world_size=setup.nproc, timeout=timedelta(seconds=300))
    world = World(rank=rank, size=setup.nproc, local_rank=rank, local_size=setup.nproc, backend="gloo")
    try:
        spec = bench_spec(setup)
        variants = {name: build(name, spec, world) for name in setup.variants}
        first = next(iter(variants.values()))
        batches = make_batches(setup, rank)
        params = list(first.model.parameters())
        sizes = (sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params))
        del params
        records: dict[str, Any] = {name: {"stages": []} for name in variants}
        for index in range(len(first.graph.stages)):
            for name, variant in variants.items():  # turns within a stage: machine drift hits every variant
                records[name]["stages"].append(time_stage(variant, variant.graph.stages[index], batches, setup))
        for name, variant in variants.items():
            records[name]["checksum"] = checksum(variant.model)
        mine: dict[str, Any] = {"variants": records}
        if setup.fill_examples:
            del variants, first  # the models' memory, before the fill loads its own
            spec = fill_spec(setup.source, setup.fill_examples, setup.max_length, setup.stages, setup.fill_dir)
            mine["fill"] = timed_fill(spec, world)
        everyone = world.gather_objects(mine, what="gathering the bench figures")
        if world.main:
            model = dict(parameters=sizes[0], param_bytes=sizes[1])
            Path(setup.out).write_text(json.dumps({"model": model, "variants": records, "ranks": everyone}))
        world.barrier("finishing the bench")
    finally:
        world.close()
