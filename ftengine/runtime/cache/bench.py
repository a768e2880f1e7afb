"""``ftengine bench cache``: epoch time uncached vs cache-filling vs cached, on the bundled MiniLM and tweets.

Each scenario trains the groups above a boundary (plus a mean-pooling linear head, AdamW) exactly as the runtime
does: uncached, the frozen prefix runs in eval mode under ``no_grad`` (the strongest uncached baseline);
cached, it is replaced by ``cache.lookup``. Uncached and cached epochs alternate on the same batches, so a
noisy shared machine slows both alike; medians and same-run ratios are reported.

The derived bound: if the frozen prefix takes a fraction ``f`` of an uncached epoch, no cache can make the
epoch faster than ``1 / (1 - f)`` (Amdahl). ``f`` is measured inside the uncached epochs themselves.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ftengine.runtime.benchkit import echo, git_commit, progress, spread
from ftengine.runtime.cache.benchdata import bench_spec_dict, build_inputs

SCENARIOS = {
    "feature_extraction": {"preset": "feature_extraction"},
    "bottom4_frozen": {"stages": [{"name": "top2", "trainable": ["encoder.layer.4-5", "head"], "epochs": 1}]},
    "gradual_3stage": {"preset": "gradual_unfreeze", "groups_per_stage": 2, "max_unfrozen": 4, "head_epochs": 1},
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ftengine bench cache`` (also used by bench/bench_cache.py); defined torch-free in the CLI."""
    from ftengine.cli.bench import add_cache_arguments

    add_cache_arguments(parser)


class _Head(nn.Module):
    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.dropout, self.linear = nn.Dropout(0.1), nn.Linear(width, classes)

    def forward(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = state["attention_mask"].unsqueeze(-1).to(state["hidden"].dtype)
        return self.linear(self.dropout((state["hidden"] * mask).sum(1) / mask.sum(1).clamp(min=1)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(data: Any, batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    # Length-bucketed batches in a seeded order (what the runtime's loader does for text).
    lengths = data.lengths["train"] if isinstance(getattr(data, "lengths", None), dict) else None
    order = sorted(range(len(data.train)), key=lambda i: lengths[i]) if lengths else list(range(len(data.train)))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    perm = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(seed)).tolist()
    return [data.collate([data.train[i] for i in chunks[p]]) for p in perm]


class _Trainer:
    """Trains groups >= boundary and a head; one call = one epoch; returns (seconds, prefix seconds)."""

    def __init__(self, backbone: nn.Module, data: Any, device: torch.device) -> None:
        self.backbone, self.device = backbone, device
        self.head = _Head(backbone.feature_dim, len(data.labels)).to(device)
        self.boundary = -1

    def set_boundary(self, boundary: int) -> None:
        self.boundary = boundary
        for i, group in enumerate(self.backbone.groups):
            for module in self.backbone.group_modules(group.name):
                module.train(i >= boundary).requires_grad_(i >= boundary)
        params = [p for p in self.backbone.parameters() if p.requires_grad] + list(self.head.parameters())
        self.opt = torch.optim.AdamW(params, lr=5e-5)

    def epoch(self, batches: list[dict[str, torch.Tensor]], cache: Any = None) -> tuple[float, float]:
        """One epoch; returns (seconds, seconds spent producing the boundary state: prefix or lookup)."""
        b, prefix = self.boundary, 0.0
        _sync(self.device)
        start = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            if cache is not None:
                state = cache.lookup("train", b, batch["index"])
            else:
                with torch.no_grad():
                    state = self.backbone.forward_from(0, {k: batch[k].to(self.device) for k in INPUTS}, stop=b)
            _sync(self.device)
            prefix += time.perf_counter() - t0
            logits = self.head(self.backbone.forward_from(b, state))
            loss = nn.functional.cross_entropy(logits, batch["labels"].to(self.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        _sync(self.device)
        return time.perf_counter() - start, prefix


def _timed_scenario(name: str, args: Any, cache_dir: str) -> dict[str, Any]:
    from ftengine.planner import plan
    from ftengine.runtime.cache import ActivationCache
    from ftengine.spec import validate_spec

    spec = validate_spec(bench_spec_dict(args.examples, args.max_length, args.batch_size, SCENARIOS[name],
                                         {"dtype": args.dtype, "dir": cache_dir}), source=f"bench:{name}")
    device = torch.device(args.device)
    backbone, data, data_path = build_inputs(spec, args.device)
    graph = plan(spec, backbone, num_classes=len(data.labels))
    layer0: Counter = Counter()  # examples through encoder.layer.0 outside autograd = frozen-prefix work
    backbone.get_submodule("encoder.layer.0").register_forward_hook(
        lambda m, a, out: None if torch.is_grad_enabled() else layer0.update(n=out.shape[0]))
    batches = _batches(data, args.batch_size, seed=0)
    trainer = _Trainer(backbone, data, device)
    cache = ActivationCache.create(spec.cache, graph, backbone, data, device=device)
    out: dict[str, Any] = dict(train_examples=len(data.train), data=data_path,
                               boundaries=[s.cache.boundary for s in graph.stages])
    trainer.set_boundary(graph.stages[0].cache.boundary)
    trainer.epoch(batches[:2])  # warm-up (allocator, thread pools) before anything is timed
    layer0.clear()
    started = time.perf_counter()
    cache.prepare(graph.cache_boundaries(), splits=("train",), batch_size=args.batch_size, quiet=True)
    fill = time.perf_counter() - started
    stats = cache.stats()
    out.update(fill_seconds=round(fill, 3), fingerprint_seconds=stats["fingerprint_seconds"],
               bytes_stored=stats["bytes"], tier=stats["tier"], cache_dtype=stats["dtype"])
    if name == "gradual_3stage":  # one cached epoch per stage; count frozen work per boundary
        fill_layer0 = layer0["n"]
        stage_seconds = []
        for stage in graph.stages:
            trainer.set_boundary(stage.cache.boundary)
            stage_seconds.append(round(trainer.epoch(batches, cache if cache.has("train", stage.cache.boundary)
                                                     else None)[0], 3))
        return dict(out, stage_epoch_seconds=stage_seconds,
                    forward_passes_per_boundary=cache.stats()["forward_passes_per_boundary"],
                    frozen_layer0_examples=layer0["n"], frozen_layer0_examples_in_fill=fill_layer0,
                    frozen_layer0_passes_over_train=layer0["n"] / len(data.train))
    filling, _ = trainer.epoch(batches, cache)
    uncached, cached, fractions, lookups = [], [], [], []
    for _ in range(args.repeats):  # interleaved: drift on a shared machine hits both sides
        seconds, prefix = trainer.epoch(batches)
        uncached.append(seconds)
        fractions.append(prefix / seconds)
        seconds, lookup = trainer.epoch(batches, cache)
        cached.append(seconds)
        lookups.append(lookup)
    t_unc, t_cac, f = statistics.median(uncached), statistics.median(cached), statistics.median(fractions)
    speedup = t_unc / t_cac
    bound = 1.0 / (1.0 - f)
    return dict(out, uncached_epoch_seconds=[round(x, 3) for x in uncached],
                cached_epoch_seconds=[round(x, 3) for x in cached], filling_epoch_seconds=round(fill + filling, 3),
                median_uncached=round(t_unc, 3), median_cached=round(t_cac, 3), speedup=round(speedup, 2),
                frozen_fraction=round(f, 4), derived_bound=round(bound, 2), fraction_of_bound=round(speedup / bound, 3),
                lookup_seconds_per_cached_epoch=round(statistics.median(lookups), 4),
                ratios_per_pair=[round(u / c, 2) for u, c in zip(uncached, cached, strict=True)],
                figures={"uncached_epoch_seconds": spread(uncached), "cached_epoch_seconds": spread(cached),
                         "speedup_per_pair": spread([u / c for u, c in zip(uncached, cached, strict=True)], 2),
                         "frozen_fraction": spread(fractions), "lookup_seconds": spread(lookups)})


def run_cache_bench(args: Any, log: Callable[[str], None] = echo) -> dict[str, Any]:
    """Run the scenarios in ``args.scenarios``; returns a JSON-able result with settings and versions.

    Repeated figures (epoch seconds, per-pair speedup, frozen share) are also in each scenario's ``figures`` as
    min / median / max / n.
    """
    from ftengine.runtime.cache.benchgather import environment, gather_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = dict(bench="cache", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  environment=dict(environment(args.device), git_commit=git_commit()),
                                  settings={k: v for k, v in vars(args).items() if not k.startswith("_")
                                            and isinstance(v, (int, float, str, list, type(None)))})
    scenarios = {}
    with progress(1 + len(args.scenarios), "cache", log) as bar:
        bar.start("gather")
        result["gather"] = gather_bench(args.device, args.batch_size, args.max_length)
        bar.log(f"gather {args.batch_size}x{args.max_length}x384 (fp32 out), us: "
                     f"{ {k: v for k, v in result['gather'].items() if k in ('fp32', 'bf16')} }")
        bar.done()
        with tempfile.TemporaryDirectory(prefix="ftengine-bench-cache-") as cache_dir:
            for name in args.scenarios:  # a cache dir per scenario: each one fills from cold
                bar.start(name)
                scenarios[name] = _timed_scenario(name, args, f"{cache_dir}/{name}")
                bar.log(_line(name, scenarios[name]))
                bar.done()
    result["scenarios"] = scenarios
    result["targets"] = _targets(scenarios)
    return result


def _line(name: str, r: dict[str, Any]) -> str:
    """One human-readable line per scenario (the JSON has everything)."""
    head = f"{name}: {r['train_examples']} train examples, {r['bytes_stored'] / 2**20:.1f} MiB cached ({r['tier']})"
    if "stage_epoch_seconds" in r:
        return (f"{head}; fill {r['fill_seconds']:.2f}s, stage epochs {r['stage_epoch_seconds']} s, forward passes "
                f"per boundary {r['forward_passes_per_boundary']}, layer 0 ran {r['frozen_layer0_passes_over_train']:.2f}"
                " passes over the training set")
    return (f"{head}; epoch uncached {r['median_uncached']:.3f}s, filling {r['filling_epoch_seconds']:.3f}s, cached "
            f"{r['median_cached']:.3f}s -> {r['speedup']:.2f}x (bound {r['derived_bound']:.2f}x from frozen share "
            f"{r['frozen_fraction']:.3f}: {100 * r['fraction_of_bound']:.0f}% of it)")


def _targets(s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "feature_extraction" in s:
        out["feature_extraction_speedup_ge_10x"] = s["feature_extraction"]["speedup"] >= 10
    if "bottom4_frozen" in s:
        out["bottom4_fraction_of_bound_ge_0.8"] = s["bottom4_frozen"]["fraction_of_bound"] >= 0.8
    if "gradual_3stage" in s:
        g = s["gradual_3stage"]
        out["gradual_frozen_forward_le_once_per_boundary"] = (
            all(n <= 1 for n in g["forward_passes_per_boundary"].values())
            and g["frozen_layer0_passes_over_train"] <= len(g["forward_passes_per_boundary"]))
    return out
