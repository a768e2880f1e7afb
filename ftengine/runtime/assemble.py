"""The pieces of a run, built from its spec: backbone, data, plan and head (`build`), and the optimizer over them
(`make_optimizer`). `run_spec` assembles a run from them; benchmarks build the same pieces to time parts of a run."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ftengine.planner.graph import ExecutionGraph
from ftengine.runtime.adapters import attach_adapters
from ftengine.runtime.model import FineTuneModel
from ftengine.runtime.param_groups import build_param_groups
from ftengine.runtime.seeding import seed_everything
from ftengine.runtime.startup import Startup
from ftengine.spec import Spec
from ftengine.spec.training import OptimizerSpec

if TYPE_CHECKING:  # annotations only: data and kernels load where they are built
    from ftengine.data.bundle import DataBundle
    from ftengine.runtime.optimizer import FlatOptimizer


@dataclass
class Built:
    """The model and data of a run, ready to train or evaluate."""

    model: FineTuneModel
    data: DataBundle
    graph: ExecutionGraph
    device: torch.device


def build(spec: Spec, spec_dir: Path, device: torch.device, *, pretrained: bool = True,
          startup: Startup | None = None) -> Built:
    """Backbone, data, plan (with the data's class count) and head, seeded by `training.seed` (each timed as a
    `startup` phase when given)."""
    from ftengine.backbones import build_backbone
    from ftengine.data import build_data
    from ftengine.heads import build_head
    from ftengine.planner import plan

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local folders or packages
    seed_everything(spec.training.seed)  # random heads (and random-init backbones) start the same every run
    timed = startup.phase if startup is not None else (lambda name: contextlib.nullcontext())
    with timed("backbone"):
        backbone = build_backbone(spec.backbone, pretrained=pretrained, device=device, base_dir=spec_dir)
    with timed("data"):
        data = build_data(spec.data, backbone, spec_dir, spec.training.seed)
    with timed("plan"):
        head = build_head(spec.head, backbone, len(data.labels))
        attach_adapters(backbone, spec.adapters)  # after the head: a run without adapters draws the same numbers
        graph = plan(spec, backbone, num_classes=len(data.labels))
        model = FineTuneModel(backbone, head).to(device)
    return Built(model, data, graph, device)


def make_optimizer(model: FineTuneModel, graph: ExecutionGraph, opt: OptimizerSpec,
                   weights_dir: Path | None = None) -> FlatOptimizer:
    """The fused FlatOptimizer over per-(layer group, decay) parameter groups, every parameter from step 0.

    ``weights_dir``: where the weights' file goes when they should be pageable (``weights_pageable``).
    """
    from ftengine.runtime.optimizer import FlatOptimizer

    # L2-SP comes from the plan (per-group strengths); no group anchored (every multiplier 0) keeps no anchors.
    l2sp = graph.l2sp if graph.l2sp is not None and graph.l2sp.anchored else None
    anchor_dtype = l2sp.dtype if l2sp is not None else None
    return FlatOptimizer(build_param_groups(model, graph, opt.no_decay, l2sp), kind=opt.kind, betas=opt.betas,
                         eps=opt.eps, momentum=opt.momentum, nesterov=opt.nesterov, max_grad_norm=opt.max_grad_norm,
                         skip_nonfinite=opt.skip_nonfinite, state_dtype=opt.state_dtype, backend=opt.backend,
                         anchor_dtype=anchor_dtype, weights_dir=weights_dir)


def weights_pageable(graph: ExecutionGraph, device: torch.device) -> bool:
    """Whether the weights should live on a file mapping (``FlatOptimizer(weights_dir=...)``): on the CPU, when a
    stage reads a cached boundary, so that the groups below it leave memory while it runs (``Trainer``)."""
    return device.type == "cpu" and any(b > 0 for b in graph.cache_boundaries())
