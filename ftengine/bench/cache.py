"""``ftengine bench cache``: epoch time uncached vs cache-filling vs cached, on the bundled MiniLM and tweets.

Each scenario trains through the runtime's own pieces: the model from the engine's builders (backbone, head
registry, ``FineTuneModel``), the plan from ``ftengine.planner.plan``, ``apply_freeze`` / ``set_train_modes`` per
stage, the fused ``FlatOptimizer`` of ``make_optimizer``, the runtime's training loader, and
``model.forward_from(boundary, state, frozen_prefix=...)`` as the training loop calls it. Uncached, the frozen
prefix runs under ``no_grad`` in eval mode (the strongest uncached baseline); cached, its output comes from
``cache.lookup``. Uncached and cached epochs alternate on the same batches, so a noisy shared machine slows both
alike; medians and same-run ratios are reported.

The derived bound: if the frozen prefix takes a fraction ``f`` of an uncached epoch, no cache can make the
epoch faster than ``1 / (1 - f)`` (Amdahl). ``f`` is measured inside the uncached epochs themselves.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ftengine.backbones import build_backbone
from ftengine.bench.cache_data import SCENARIOS, bench_spec_dict
from ftengine.bench.gather import gather_bench
from ftengine.bench.kit import echo, environment, progress, spread, sync
from ftengine.bench.random_init import model_source
from ftengine.data import build_data
from ftengine.heads import build_head
from ftengine.planner import plan
from ftengine.runtime.cache import ActivationCache
from ftengine.runtime.freeze import apply_freeze, set_train_modes
from ftengine.runtime.model import FineTuneModel, inputs_of, to_device
from ftengine.runtime.param_groups import apply_stage_settings
from ftengine.runtime.assemble import make_optimizer
from ftengine.runtime.schedule import set_lrs
from ftengine.runtime.seeding import seed_everything
from ftengine.spec import validate_spec


@dataclass
class BenchRun:
    """A scenario's model, data, plan and optimizer, built as ``run_spec`` builds them."""

    spec: Any
    model: FineTuneModel
    data: Any
    graph: Any
    optimizer: Any
    device: torch.device


def build_run(spec: Any, device: torch.device) -> BenchRun:
    """Backbone, data, plan, head and optimizer from the engine's own builders (head seeded by the spec)."""
    seed_everything(spec.training.seed)
    backbone = build_backbone(spec.backbone, device=device, base_dir=Path.cwd())
    data = build_data(spec.data, backbone, Path.cwd(), seed=spec.training.seed)
    graph = plan(spec, backbone, num_classes=len(data.labels))
    model = FineTuneModel(backbone, build_head(spec.head, backbone, len(data.labels))).to(device)
    return BenchRun(spec, model, data, graph, make_optimizer(model, graph, spec.optimizer), device)


def open_cache(run: BenchRun) -> Any:
    """The runtime's activation cache for the scenario's plan (a temporary directory per scenario: cold fill)."""
    return ActivationCache.create(run.graph, run.model.backbone, run.data, device=run.device)


def enter_stage(run: BenchRun, stage: Any) -> None:
    """What the training loop does when a stage starts: freeze, optimizer masks and LRs, train/eval modes."""
    apply_freeze(run.model, run.graph, stage)
    set_lrs(run.optimizer, apply_stage_settings(run.optimizer, stage), 1.0)
    set_train_modes(run.model, run.graph, stage)


def _epoch(run: BenchRun, stage: Any, batches: list[dict[str, Any]], cache: Any = None) -> tuple[float, float]:
    """One training epoch of ``stage``; returns (seconds, seconds spent producing the boundary state).

    The boundary state is the frozen prefix's output (uncached: run here, under ``no_grad``, exactly what
    ``forward_from(0, inputs, frozen_prefix=b)`` runs first) or a ``cache.lookup`` (cached); timing it apart
    gives the frozen share ``f`` of the bound.
    """
    b, prefix = stage.cache.boundary, 0.0
    set_train_modes(run.model, run.graph, stage)  # a cache fill leaves the backbone in eval mode
    sync(run.device)
    start = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        if cache is not None:
            state = cache.lookup("train", b, batch["index"])
        else:
            with torch.no_grad():
                state = run.model.backbone.forward_from(0, inputs_of(to_device(batch, run.device)), stop=b)
        sync(run.device)
        prefix += time.perf_counter() - t0
        logits = run.model.forward_from(b, state, frozen_prefix=stage.frozen_prefix)
        loss = F.cross_entropy(logits.float(), batch["labels"].to(run.device))
        loss.backward()
        run.optimizer.step()
        run.optimizer.zero_grad()
    sync(run.device)
    return time.perf_counter() - start, prefix


def _timed_scenario(name: str, args: Any, cache_dir: str, source: str) -> dict[str, Any]:
    cache_section = {"dtype": args.dtype, "dir": cache_dir, "tier": getattr(args, "tier", "auto")}
    spec = validate_spec(bench_spec_dict(args.examples, args.max_length, args.batch_size, SCENARIOS[name],
                                         cache_section, source), source=f"bench:{name}")
    run = build_run(spec, torch.device(args.device))
    graph, data = run.graph, run.data
    layer0: Counter = Counter()  # examples through encoder.layer.0 outside autograd = frozen-prefix work
    run.model.backbone.get_submodule("encoder.layer.0").register_forward_hook(
        lambda m, a, out: None if torch.is_grad_enabled() else layer0.update(n=out.shape[0]))
    # The runtime's training loader (length buckets, seeded order), collated once: epochs time training only.
    batches = list(data.make_loader("train", args.batch_size, shuffle=True, seed=spec.training.seed))
    cache = open_cache(run)
    out: dict[str, Any] = dict(train_examples=len(data.train), data="ftengine.data",
                               boundaries=[s.cache.boundary for s in graph.stages])
    enter_stage(run, graph.stages[0])
    _epoch(run, graph.stages[0], batches[:2])  # warm-up (allocator, thread pools) before anything is timed
    layer0.clear()
    run.model.backbone.eval()  # the fill runs the frozen prefix as training will (as run_spec does)
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
            enter_stage(run, stage)
            cached = cache if cache.has("train", stage.cache.boundary) else None
            stage_seconds.append(round(_epoch(run, stage, batches, cached)[0], 3))
        return dict(out, stage_epoch_seconds=stage_seconds,
                    forward_passes_per_boundary=cache.stats()["forward_passes_per_boundary"],
                    frozen_layer0_examples=layer0["n"], frozen_layer0_examples_in_fill=fill_layer0,
                    frozen_layer0_passes_over_train=layer0["n"] / len(data.train))
    stage = graph.stages[0]
    filling, _ = _epoch(run, stage, batches, cache)
    uncached, cached, fractions, lookups = [], [], [], []
    for _ in range(args.repeats):  # interleaved: drift on a shared machine hits both sides
        seconds, prefix = _epoch(run, stage, batches)
        uncached.append(seconds)
        fractions.append(prefix / seconds)
        seconds, lookup = _epoch(run, stage, batches, cache)
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
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = dict(bench="cache", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  environment=environment(args.device),
                                  settings={k: v for k, v in vars(args).items() if not k.startswith("_")
                                            and isinstance(v, (int, float, str, list, type(None)))})
    scenarios = {}
    with progress(1 + len(args.scenarios), "cache", log) as bar:
        bar.start("gather")
        result["gather"] = gather_bench(args.device, args.batch_size, args.max_length)
        bar.log(f"gather {args.batch_size}x{args.max_length}x384 (fp32 out): " + "; ".join(
            f"{store} storage: native {r.get('native_us', '-')} us ({r.get('native_ratio_to_copy', '-')} of copy), "
            f"reference {r['reference_us']} us, pad_sequence {r['pad_sequence_us']} us"
            for store, r in result["gather"].items() if store in ("fp32", "bf16")))
        bar.done()
        with tempfile.TemporaryDirectory(prefix="ftengine-bench-cache-") as cache_dir:
            source = model_source(getattr(args, "model_dir", None), getattr(args, "random_init", False),
                                  Path(cache_dir) / "random-init-model")
            for name in args.scenarios:  # a cache dir per scenario: each one fills from cold
                bar.start(name)
                scenarios[name] = _timed_scenario(name, args, f"{cache_dir}/{name}", source)
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
                f"per boundary {r['forward_passes_per_boundary']}, layer 0 ran "
                f"{r['frozen_layer0_passes_over_train']:.2f} passes over the training set")
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
