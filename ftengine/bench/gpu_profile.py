"""Where a training step's time goes: torch.profiler over a few ftengine steps of each quickstart stage.

The steps are the training loop's own (``Trainer.logits`` / ``_loss`` / ``_step``): the stage's cached boundary
state (``cache.lookup``) or the inputs, ``model.forward_from`` under the run's autocast, cross-entropy, backward,
the fused ``FlatOptimizer`` step. Per stage: wall milliseconds per step (unprofiled, synchronized), the device's
busy time per step (the sum of its kernels; far below the wall time means the step waits on the host: launch
overhead), and the top kernels by total time. On the CPU the "kernels" are the operators by self CPU time, and
the busy time sums them over threads (it can exceed the wall time).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import cycle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ftengine.bench.cache import BenchRun, build_run, enter_stage, open_cache
from ftengine.bench.e2e_recipes import RECIPES
from ftengine.bench.kit import echo, environment, sync
from ftengine.bench.random_init import model_source
from ftengine.runtime.device import attention_kernels, autocast_dtype
from ftengine.runtime.evaluate import autocast_context
from ftengine.runtime.model import inputs_of, to_device
from ftengine.spec import validate_spec


def _stepper(run: BenchRun, stage: Any, cache: Any, amp: torch.dtype | None) -> Callable[[dict[str, Any]], None]:
    """One training step of ``stage`` as the training loop takes it (no LR schedule: it moves no kernel)."""
    boundary = stage.cache.boundary if cache.has("train", stage.cache.boundary) else 0

    def step(batch: dict[str, Any]) -> None:
        state = (cache.lookup("train", boundary, batch["index"]) if boundary
                 else inputs_of(to_device(batch, run.device)))
        with autocast_context(run.device, amp):
            logits = run.model.forward_from(boundary, state, frozen_prefix=stage.frozen_prefix)
        F.cross_entropy(logits.float(), batch["labels"].to(run.device)).backward()
        run.optimizer.step()
        run.optimizer.zero_grad()

    return step


def _top(prof: Any, device: torch.device, steps: int, top: int) -> tuple[list[dict[str, Any]], float]:
    """The ``top`` kernels (CUDA) or operators (CPU) by total time, and the summed time per step in ms."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    if device.type == "cuda":  # device-side kernel events: their durations are the GPU's busy time
        from torch.autograd import DeviceType

        for event in prof.events():
            if event.device_type == DeviceType.CUDA:
                totals[event.name][0] += event.time_range.elapsed_us()
                totals[event.name][1] += 1
    if not totals:  # the CPU, or no device-side events recorded: operators by their own time
        attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        for event in prof.key_averages():
            totals[event.key] = [getattr(event, attr), event.count]
    busy = sum(t for t, _ in totals.values())
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return ([dict(name=name, calls=int(n), ms_per_step=round(t / 1e3 / steps, 4),
                  share=round(t / busy, 4) if busy else 0) for name, (t, n) in rows], busy / 1e3 / steps)


def profile_stage(run: BenchRun, stage: Any, cache: Any, batches: Iterator[dict[str, Any]], amp: torch.dtype | None,
                  steps: int, top: int) -> dict[str, Any]:
    """Warm up, time ``steps`` steps unprofiled, then profile ``steps`` more; the figures of one stage."""
    from torch.profiler import ProfilerActivity, profile

    enter_stage(run, stage)
    step = _stepper(run, stage, cache, amp)
    for _ in range(3):  # allocator, autotuning, lazy optimizer state
        step(next(batches))
    wall = []
    for _ in range(steps):
        batch = next(batches)
        sync(run.device)
        start = time.perf_counter()
        step(batch)
        sync(run.device)
        wall.append((time.perf_counter() - start) * 1e3)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(next(batches))
        sync(run.device)
    kernels, busy = _top(prof, run.device, steps, top)
    sort_by = "self_device_time_total" if run.device.type == "cuda" else "self_cpu_time_total"
    return dict(stage=stage.name, boundary=stage.cache.boundary, frozen_prefix=stage.frozen_prefix, steps=steps,
                wall_ms_per_step=round(statistics.median(wall), 3), wall_ms_all=[round(w, 3) for w in wall],
                busy_ms_per_step=round(busy, 3), busy_share_of_wall=round(busy / statistics.median(wall), 3),
                top=kernels, table=prof.key_averages().table(sort_by=sort_by, row_limit=top))


def run_profile(device: str = "cuda", precision: str = "auto", steps: int = 10, examples: int = 512,
                model_dir: str | None = None, random_init: bool = False, top: int = 15,
                log: Callable[[str], None] = echo) -> dict[str, Any]:
    """Profile ``steps`` steps of each stage of the quickstart recipe (MiniLM on ``examples`` tweets)."""
    with tempfile.TemporaryDirectory(prefix="ftengine-profile-") as tmp:
        source = model_source(model_dir, random_init, Path(tmp) / "model")
        recipe = RECIPES["quickstart"]
        spec_dict = recipe.spec(train=examples, validation=max(examples // 4, 8), threads=torch.get_num_threads(),
                                out_dir=tmp, device=device, precision=precision, source=source)
        spec_dict["cache"]["dir"] = str(Path(tmp) / "cache")
        spec = validate_spec(spec_dict, source="bench:profile")
        run = build_run(spec, torch.device(device))
        cache = open_cache(run)
        run.model.backbone.eval()  # the fill runs the frozen prefix as training will
        cache.prepare(run.graph.cache_boundaries(), splits=("train",), batch_size=recipe.batch_size, quiet=True)
        amp = autocast_dtype(precision, run.device)
        batches = cycle(list(run.data.make_loader("train", recipe.batch_size, shuffle=True, seed=0)))
        stages = []
        for stage in run.graph.stages:
            with attention_kernels(run.device):  # as `ftengine run` trains
                stages.append(profile_stage(run, stage, cache, batches, amp, steps, top))
            s = stages[-1]
            log(f"profile {s['stage']}: {s['wall_ms_per_step']:.2f} ms/step wall, device busy "
                f"{s['busy_ms_per_step']:.2f} ms ({100 * s['busy_share_of_wall']:.0f}%); top: "
                + ", ".join(f"{k['name'][:40]} {100 * k['share']:.0f}%" for k in s["top"][:3]))
    return dict(bench="profile", environment=environment(device),
                settings=dict(recipe="quickstart", examples=examples, steps=steps, precision=precision,
                              autocast=str(amp), random_init=random_init, model_dir=model_dir, top=top),
                stages=stages)
