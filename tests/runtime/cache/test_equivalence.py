"""Cached and uncached training take the same steps: same losses for the same seed, frozen layers run once.

The loop below is the runtime's rule written out: frozen groups below the boundary run in eval mode without
grad (uncached) or are replaced by ``cache.lookup`` (cached); the groups above train in train mode (dropout
on), followed by a mean-pooling linear head and AdamW.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from cache_testing import make_plan, with_cache
from torch import nn

from ftengine.runtime.cache import ActivationCache
from ftengine.runtime.model import inputs_of

# |cached loss - uncached loss| per step, on losses ~1.1 over 4 AdamW steps. fp32: the cache holds the same
# numbers up to matmul blocking on differently padded fill batches; measured <= 2.4e-7. bf16 rounds each cached
# activation to 8 mantissa bits (relative error <= 2**-9): measured <= 1.4e-4; fp16 (11 bits): <= 1.6e-5.
# Tolerances keep ~4-10x headroom over those measurements.
LOSS_TOLERANCE = {"fp32": 1e-6, "bf16": 1e-3, "fp16": 1e-4}


class MeanPoolHead(nn.Module):
    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.linear = nn.Linear(width, classes)

    def forward(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = state["attention_mask"].unsqueeze(-1).to(state["hidden"].dtype)
        pooled = (state["hidden"] * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.linear(self.dropout(pooled))


def train(backbone, data, boundary: int, steps: int, cache: ActivationCache | None, seed: int = 0) -> list[float]:
    """``steps`` AdamW steps with groups >= boundary and the head trainable; returns the losses."""
    torch.manual_seed(seed)
    head = MeanPoolHead(backbone.feature_dim, len(data.labels))
    for i, group in enumerate(backbone.groups):
        for module in backbone.group_modules(group.name):
            module.train(i >= boundary)
            module.requires_grad_(i >= boundary)
    params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed)).tolist()
    losses = []
    for step in range(steps):
        batch = data.collate([data.train[order[(step * 8 + j) % len(order)]] for j in range(8)])  # epochs wrap
        if cache is not None and cache.has("train", boundary):
            state = cache.lookup("train", boundary, batch["index"])
        else:
            with torch.no_grad():
                state = backbone.forward_from(0, inputs_of(batch), stop=boundary)
        loss = nn.functional.cross_entropy(head(backbone.forward_from(boundary, state)), batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_cached_training_matches_uncached(dtype, minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, ["freeze.groups_per_stage=2", "freeze.max_unfrozen=6"])
    boundary = 5  # embeddings + layers 0-3 frozen, layers 4-5 (dropout active) and the head train
    reference = train(copy.deepcopy(minilm_backbone), tiny_data, boundary, steps=4, cache=None)
    backbone = copy.deepcopy(minilm_backbone)
    cache = ActivationCache.create(with_cache(graph, dtype=dtype), backbone, tiny_data,
                                   device="cpu")
    cache.prepare([boundary], splits=("train",), quiet=True)
    cached = train(backbone, tiny_data, boundary, steps=4, cache=cache)
    assert cache.stats()["hits"] == 4
    assert len(set(reference)) == 4  # the model learns: losses move between steps
    for step, (a, b) in enumerate(zip(reference, cached, strict=True)):
        assert abs(a - b) <= LOSS_TOLERANCE[dtype], f"step {step}: uncached {a:.7f} vs cached {b:.7f} ({dtype})"


def test_three_stage_gradual_unfreezing_runs_frozen_layers_once_per_boundary(minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, ["freeze.groups_per_stage=2", "freeze.max_unfrozen=4"])
    boundaries = [s.cache.boundary for s in graph.stages]
    assert boundaries == [8, 5, 3] and all(s.cache.allowed for s in graph.stages)
    backbone = copy.deepcopy(minilm_backbone)
    frozen_examples: Counter = Counter()

    def count(name):  # examples a group processed without grad: frozen-prefix work
        def hook(module, args, out):
            if not torch.is_grad_enabled():
                frozen_examples[name] += (out[0] if isinstance(out, tuple) else out).shape[0]
        return hook

    for group in backbone.groups:
        backbone.group_modules(group.name)[0].register_forward_hook(count(group.name))
    cache = ActivationCache.create(graph, backbone, tiny_data, device="cpu")
    cache.prepare(graph.cache_boundaries(), splits=("train",), quiet=True)
    for stage in graph.stages:  # two epochs per stage over the 32 training examples
        train(backbone, tiny_data, stage.cache.boundary, steps=8, cache=cache)
    n = len(tiny_data.train)
    # Every group below the highest boundary ran exactly once over the training set, during the fill.
    assert {g: frozen_examples[g] for g in backbone.group_names[:8]} == dict.fromkeys(backbone.group_names[:8], n)
    assert cache.stats()["forward_passes_per_boundary"] == {3: 1, 5: 1, 8: 1}
    assert cache.stats()["hits"] == 24
