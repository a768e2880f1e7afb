"""The three data-parallel trainers `ftengine bench ddp` compares, each one optimizer step at a time.

- ``ftengine``: the FlatOptimizer over the runtime's parameter groups, frozen parameters ``requires_grad=False``,
  the frozen prefix run without autograd (``forward_from(..., frozen_prefix=)``), and ``GradSync`` after backward:
  one control all-reduce, then the trainable ranges of the flat gradient buffer.
- ``ddp-lr0``: ``DistributedDataParallel`` (``find_unused_parameters=True``, as Hugging Face's Trainer sets it)
  wrapped once with every parameter trainable; frozen groups get lr 0
  in ``torch.optim.AdamW`` (the workaround for DDP fixing its reduced set at wrap time, pytorch/pytorch#12603):
  every gradient is computed and all-reduced at every step.
- ``ddp-rewrap``: frozen parameters ``requires_grad=False`` and a fresh ``DistributedDataParallel(...,
  find_unused_parameters=True)`` at every stage change (ClassyVision's and fairscale's way).

DDP's gradient bytes are counted by a communication hook that adds each bucket's size and then runs PyTorch's
default all-reduce hook; ftengine's come from ``World.sent["grads"]``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from ftengine.runtime.distributed import World
from ftengine.runtime.freeze import apply_freeze, set_train_modes
from ftengine.runtime.grad_sync import GradSync
from ftengine.runtime.model import FineTuneModel, inputs_of
from ftengine.runtime.param_groups import apply_stage_settings, build_param_groups
from ftengine.runtime.assemble import make_optimizer
from ftengine.runtime.schedule import set_lrs

VARIANTS = ("ftengine", "ddp-lr0", "ddp-rewrap")


@dataclass
class HookState:
    """What the counting communication hook adds to: gradient bytes handed to all-reduce on this rank."""

    bytes: int = 0


def counting_allreduce_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Count the bucket's bytes, then all-reduce it as DDP does by default (sum, divided by the world size)."""
    buffer = bucket.buffer()
    state.bytes += buffer.numel() * buffer.element_size()
    return default_hooks.allreduce_hook(None, bucket)


# DDP checks the hook's annotations against the classes themselves; this module's postponed annotations are strings.
counting_allreduce_hook.__annotations__ = {"state": HookState, "bucket": dist.GradBucket,
                                           "return": torch.futures.Future[torch.Tensor]}


@dataclass
class Variant:
    """One trainer: its model replica, optimizer and gradient-byte counter (state shared by the three kinds)."""

    name: str
    model: FineTuneModel
    graph: Any
    spec: Any
    world: World
    optimizer: Any = None
    stage: Any = None
    hook: HookState = field(default_factory=HookState)
    ddp: DistributedDataParallel | None = None
    wrap_seconds: list[float] = field(default_factory=list)  # ddp-rewrap: DDP construction per stage
    _sync: GradSync | None = None

    def grad_bytes(self) -> int:
        """Gradient bytes this rank has all-reduced so far."""
        return self.world.sent["grads"] if self.name == "ftengine" else self.hook.bytes

    def control_bytes(self) -> int:
        """ftengine's per-step agreement bytes so far (stop, non-finite, loss, which grads exist); 0 for DDP."""
        return self.world.sent["control"] if self.name == "ftengine" else 0

    def expected_bytes(self) -> int | None:
        """ftengine: GradSync's trainable bytes of the current stage (None for the DDP variants)."""
        return self._sync.trainable_bytes() if self._sync is not None else None

    def enter(self, stage: Any) -> None:
        """Start ``stage``: freeze (or not), learning rates, train/eval modes, and DDP (re-)wrapping."""
        self.stage = stage
        if self.name != "ddp-lr0":
            apply_freeze(self.model, self.graph, stage)
        base = apply_stage_settings(self.optimizer, stage)
        if self.name == "ddp-lr0":  # everything stays trainable; frozen groups just do not move
            base = {g["name"]: base[g["name"]] if g["trainable"] else 0.0 for g in self.optimizer.param_groups}
        set_lrs(self.optimizer, base, 1.0)
        set_train_modes(self.model, self.graph, stage)
        if self.name == "ddp-rewrap":
            self.ddp = None
            gc.collect()  # the old reducer's autograd hooks go with it before the new one registers its own
            started = time.perf_counter()
            self.ddp = DistributedDataParallel(self.model, find_unused_parameters=True)
            self.wrap_seconds.append(time.perf_counter() - started)
            self.ddp.register_comm_hook(self.hook, counting_allreduce_hook)

    def step(self, batch: dict[str, torch.Tensor], whole: int) -> None:
        """One optimizer step on this rank's share of a global batch of ``whole`` examples."""
        labels = batch["labels"]
        if self.name == "ftengine":
            logits = self.model.forward_from(0, inputs_of(batch), frozen_prefix=self.stage.frozen_prefix)
            loss = F.cross_entropy(logits.float(), labels)
            n = int(labels.shape[0])
            (loss * (n / whole)).backward()  # the ranks' gradients SUM to the global batch's (as the runtime does)
            self._sync.step(stop=False, finite=torch.isfinite(loss.detach()), loss_sum=loss.detach() * n)
        else:
            loss = F.cross_entropy(self.ddp(batch).float(), labels)
            loss.backward()  # DDP averages over ranks: the same gradient of the global batch's mean loss
        self.optimizer.step()
        self.optimizer.zero_grad()


def build_variant(name: str, model: FineTuneModel, graph: Any, spec: Any, world: World) -> Variant:
    """A variant around a freshly built ``model`` (every rank's replica starts from rank 0's weights)."""
    variant = Variant(name, model, graph, spec, world)
    if name == "ftengine":
        world.broadcast_model(model)
        variant.optimizer = make_optimizer(model, graph, spec.optimizer)
        variant._sync = GradSync(world, variant.optimizer)
        return variant
    opt = spec.optimizer
    # torch.optim keeps the extra keys (name, trainable) that apply_stage_settings reads and writes.
    groups = build_param_groups(model, graph, opt.no_decay)
    variant.optimizer = torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps)
    if name == "ddp-lr0":
        for p in model.parameters():
            p.requires_grad_(True)
        # find_unused_parameters=True as Hugging Face's Trainer sets by default: BERT's pooler never gets a gradient
        # under mean pooling, and plain DDP stops with an error at the second step. Unused parameters' buckets are
        # still all-reduced (as zeros), so this all-reduces every parameter's bytes at every step.
        variant.ddp = DistributedDataParallel(model, find_unused_parameters=True)  # broadcasts rank 0's weights
        variant.ddp.register_comm_hook(variant.hook, counting_allreduce_hook)
    return variant


@torch.no_grad()
def checksum(model: torch.nn.Module) -> float:
    """A position-weighted float64 sum of every parameter (equal on every rank when the replicas are equal)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(model.parameters()):
        total += p.detach().double().sum() * (1 + (i % 7) * 1e-3)
    return float(total)
