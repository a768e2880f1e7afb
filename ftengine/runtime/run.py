"""`run_spec`: one fine-tuning run from a spec, start to finish (or from a checkpoint to finish)."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftengine import __version__
from ftengine.errors import FtengineError, RunError
from ftengine.planner.describe import describe
from ftengine.planner.facts import backbone_source
from ftengine.planner.graph import HEAD, ExecutionGraph
from ftengine.runtime.wise_ft import snapshot
from ftengine.runtime.checkpoint import BEST, DeltaState, load_checkpoint, resume_point
from ftengine.runtime.allocator import tune_allocator
from ftengine.runtime.assemble import build, make_optimizer, weights_pageable
from ftengine.runtime.device import (attention_kernels, autocast_dtype, fill_dtype, fill_note, grad_scaler,
                                     pick_device, set_threads)
from ftengine.runtime.distributed import World
from ftengine.runtime.ranks import check_world, distributed_record, seed_ranks, world_threads
from ftengine.runtime.evaluate import metric_names
from ftengine.runtime.lock import locked_run_dir
from ftengine.runtime.interrupts import Interrupted
from ftengine.runtime.loop import Trainer
from ftengine.runtime.metrics import choose_threshold
from ftengine.runtime.model import FineTuneModel
from ftengine.runtime.run_dir import (
    MetricsLog,
    claim_run_dir,
    read_run_info,
    run_dir_of,
    start_fresh,
    write_json,
    write_spec_files,
)
from ftengine.runtime.progress import Console
from ftengine.runtime.schedule import Schedule
from ftengine.runtime.settings import TrainSettings
from ftengine.runtime.startup import Startup
from ftengine.runtime.tracker import Tracker
from ftengine.spec import Spec

if TYPE_CHECKING:  # annotations only: each is imported where it is built (data, kernels, cache load lazily)
    from ftengine.data.bundle import DataBundle
    from ftengine.runtime.cache import ActivationCache


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run directory.
        metrics: final numbers: best validation epoch's metrics, test metrics (`test_*`), timings.
    """

    run_dir: Path
    metrics: dict[str, Any]


def run_spec(spec: Spec | None, spec_path: str | Path, *, resume: bool | str | Path = False, quiet: bool = False,
             overrides: tuple[str, ...] | list[str] = ()) -> RunResult:
    """Fine-tune as `spec` says and write the run directory.

    Args:
        spec: a loaded Spec, or None to load `spec_path` with `overrides`.
        spec_path: the spec file (names the run and anchors relative paths).
        resume: continue the run in the spec's run directory from its last checkpoint (True), or the run in
            this directory; without a checkpoint there the run starts from the beginning.
        quiet: no progress bars or per-epoch lines.
        overrides: `key.path=value` overrides, used only when `spec` is None.

    Raises:
        SpecError, PlanError, DataError: the spec, plan or data is wrong (one line per problem).
        RunError: the run directory is taken (or in use by another process), the device is missing, or the run
            was interrupted (exit 130).
    """
    spec_path = Path(spec_path)
    if spec is None:
        from ftengine.spec import load_spec

        spec = load_spec(spec_path, list(overrides))
    started = time.perf_counter()
    startup = Startup()  # process start -> first optimizer step, by phase
    tune_allocator()  # opt-in: FTENGINE_MMAP_THRESHOLD=4194304 trades up to ~20% run time for 27-90 MB
    world = World.from_env()  # started by torchrun: one of several data-parallel processes
    console = Console(quiet, silent=not world.main)
    run_dir = Path(resume) if isinstance(resume, (str, Path)) else run_dir_of(spec, spec_path)
    device = world.device_for(pick_device(spec.training.device))
    if world.distributed:
        check_world(spec, world)
        world.start(device)
    try:  # rank 0 writes the folder for every rank (one writer per folder)
        lock = locked_run_dir(run_dir, "ftengine run --resume" if resume else "ftengine run") if world.main \
            else contextlib.nullcontext()
        with lock, attention_kernels(device):
            return _run_locked(spec, spec_path, run_dir, resume, console, started, world, device, startup)
    finally:
        world.close()


def _run_locked(spec: Spec, spec_path: Path, run_dir: Path, resume: bool | str | Path, console: Console,
                started: float, world: World, device: torch.device, startup: Startup) -> RunResult:
    """`run_spec` once it holds the run directory's lock: data, model and plan; cache; optimizer; trainer; fit;
    outputs (each built once, from what came before it). A data-parallel rank other than 0 reads the folder,
    never writes it."""
    resuming = world.decide(lambda: claim_run_dir(run_dir, resume=bool(resume), overwrite=spec.output.overwrite),
                            "claiming the run directory")
    info = read_run_info(run_dir)
    if resume and not resuming:
        console.line(f"--resume: no checkpoint in {run_dir}; starting from the beginning")
    if resuming and info.get("status") == "finished":
        console.always(f"ftengine: {run_dir} is already finished; nothing to resume")
        return RunResult(run_dir, info.get("final", {}))
    settings = TrainSettings.from_spec(spec)
    set_threads(spec.training.threads or world_threads(world, device))
    amp = autocast_dtype(spec.training.precision, device)
    built = build(spec, spec_path.parent, device, startup=startup)
    model, data, graph = built.model, built.data, built.graph
    load_seconds = time.perf_counter() - started
    # A damaged newest checkpoint falls back to the one before it, with a warning (see resume_point).
    with startup.phase("checkpoint"):
        checkpoint, state = resume_point(run_dir) if resuming else (None, None)
    weights = DeltaState(model, {n for n, _ in model.named_parameters() if graph.group_of(n) == HEAD})
    # WiSE-FT mixes with the pretrained weights: copy the ones that will train before a resume overwrites them.
    pretrained = snapshot(model, graph) if spec.output.wise_ft else None
    if state is None:  # the spec, data and model all loaded: only now replace what was in the folder
        info = world.decide(lambda: start_run_dir(run_dir, spec, spec_path, graph, data, device, world),
                            "preparing the run directory")
    else:
        check_same_run(run_dir, graph, data, info)
        weights.restore(state, f"--resume: {checkpoint}")  # before the cache fills from them
        info = {**{k: v for k, v in info.items() if k != "error"}, "status": "running"}  # it may have failed before
        if world.main:
            write_json(run_dir / "run.json", info)
        console.line(f"resuming {run_dir} at stage {state['progress']['stage']} epoch "
                     f"{state['progress']['epoch'] + 1}, step {state['progress']['global_step']}")
    world.broadcast_model(model)  # every replica starts from rank 0's weights (checked at each stage start)
    with failure_recorded(run_dir, info, write=world.main):  # from here on, a run that fails says so in run.json
        data_lines = data.describe() if hasattr(data, "describe") else ""
        console.line(f"run directory: {run_dir}\n{data_lines}\n{describe(graph)}")
        if world.distributed:
            console.line(f"data parallel: {world.describe()}; global batch {settings.batch_size} = "
                         f"{settings.batch_size // world.size} per process")
        # The optimizer moves the weights into its flat buffers before the fill pages the checkpoint file in: the
        # two copies are then never resident together (-70 to -110 MiB peak RSS on MiniLM).
        with startup.phase("optimizer"):
            optimizer = make_optimizer(model, graph, spec.optimizer,
                                       weights_dir=run_dir if weights_pageable(graph, device) else None)
        with startup.phase("cache"):
            cache = open_cache(graph, model, data, device, run_dir, console,
                               stage=state["progress"]["stage"] if state else 0, batch_size=settings.eval_batch_size,
                               model_label=backbone_source(spec), world=world)
        trainer = Trainer(startup=startup,
            settings=settings, graph=graph, model=model, optimizer=optimizer,
            schedule=Schedule(spec.schedule, stage_steps(graph, data, settings)),
            tracker=Tracker.from_spec(spec.training.early_stopping), data=data, cache=cache, device=device,
            amp_dtype=amp, prefix_dtype=fill_dtype(graph.cache.fill_precision, device), run_dir=run_dir,
            console=console,
            log=MetricsLog(run_dir / "metrics.jsonl", keep=state["metrics_rows"] if state else 0, write=world.main),
            scaler=grad_scaler(amp, device), weights=weights, world=world)
        if state is not None:
            trainer.resume_from(state)
        seed_ranks(state, world, spec.training.seed, console)  # last: everything above may draw random numbers
        train_started = time.perf_counter()
        trainer.fit()
        metrics = finish(trainer, spec, pretrained=pretrained)
        if cache is not None:  # not on failure: a cache kept in the run directory makes --resume start warm
            cache.close()
        metrics.update(load_seconds=round(load_seconds, 2),
                       train_seconds=round(time.perf_counter() - train_started, 2),
                       total_seconds=round(time.perf_counter() - started, 2), startup_seconds=startup.record())
        console.line(startup.line())
        if world.main:
            write_json(run_dir / "run.json", {**info, "status": "finished", "final": metrics})
            if world.distributed:
                write_json(run_dir / "distributed.json", distributed_record(trainer, world))
        console.always(summary_line(metrics, run_dir))
        return RunResult(run_dir, metrics)


@contextlib.contextmanager
def failure_recorded(run_dir: Path, info: dict[str, Any], *, write: bool = True) -> Iterator[None]:
    """Rewrite `run.json` (`info`) with status "failed" and the `error` when the body raises (Ctrl-C:
    "interrupted"), so that it never says "running" for a run that stopped; the exception goes on. `write` off:
    a data-parallel rank other than 0 leaves the file to rank 0."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if not write:
            raise
        status = "interrupted" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "failed"
        text = str(exc).strip().splitlines()
        reason = text[0] if isinstance(exc, FtengineError) and text else f"{type(exc).__name__}: {' '.join(text)}"
        write_json(run_dir / "run.json", {**info, "status": status, "error": reason})
        raise


def start_run_dir(run_dir: Path, spec: Spec, spec_path: Path, graph: ExecutionGraph, data: DataBundle,
                  device: torch.device, world: World | None = None) -> dict[str, Any]:
    """Empty the run directory and write what a fresh run starts with; returns its `run.json` content."""
    start_fresh(run_dir)
    write_spec_files(run_dir, spec, graph, data.labels)
    info = {"status": "running", "spec_path": str(spec_path.resolve()), "ftengine": __version__,
            "device": str(device), "data_fingerprint": data.fingerprint(),
            **({"world_size": world.size, "backend": world.backend} if world is not None and world.distributed
               else {})}
    write_json(run_dir / "run.json", info)
    return info


def stage_steps(graph: ExecutionGraph, data: DataBundle, settings: TrainSettings) -> list[int]:
    """Optimizer steps each stage takes (its epochs x one epoch's steps): the LR schedule's lengths."""
    batches = len(data.make_loader("train", settings.batch_size, shuffle=True, seed=settings.seed))
    per_epoch = math.ceil(batches / settings.grad_accum_steps)
    return [s.epochs * per_epoch for s in graph.stages]


def check_same_run(run_dir: Path, graph: ExecutionGraph, data: DataBundle, info: dict[str, Any]) -> None:
    """A checkpoint only continues the run that wrote it: same plan, same examples.

    Raises:
        RunError: the spec now plans different stages/groups/LRs, or the data changed (file, limit, split, tokens).
    """
    saved = json.loads((run_dir / "plan.json").read_text()) if (run_dir / "plan.json").is_file() else None
    if saved is not None and saved != json.loads(json.dumps(graph.to_dict())):
        raise RunError(f"--resume: {run_dir} was trained with a different plan (stages, groups or learning rates) "
                       "than this spec gives; resume with the spec it was started with, or start a new run "
                       "(output.name=... or output.overwrite=true)")
    if info.get("data_fingerprint") not in (None, data.fingerprint()):
        raise RunError(f"--resume: the data differs from what {run_dir} was trained on (file contents, limit, split "
                       "or tokenization changed); resume with the same data, or start a new run "
                       "(output.name=... or output.overwrite=true)")


def open_cache(graph: ExecutionGraph, model: FineTuneModel, data: DataBundle, device: torch.device, run_dir: Path,
               console: Console, *, stage: int, batch_size: int, model_label: str,
               world: World | None = None) -> ActivationCache | None:
    """The activation cache for the stages from `stage` on, filled or loaded (None when no stage can use one).

    Args:
        batch_size: fill batch size (the evaluation batch size: no activations are kept for backward).
        model_label: what `ftengine cache ls` shows as the entries' model.
        world: a data-parallel run's ranks: the fill is split over each node's ranks.
    """
    if stage >= len(graph.stages) or not graph.cache_boundaries():
        return None
    from ftengine.runtime.cache import ActivationCache

    cache = ActivationCache.create(graph, model.backbone, data, device=device, run_dir=run_dir,
                                   description={"spec": run_dir.name, "model": model_label},
                                   **({"world": world} if world is not None and world.distributed else {}))
    if cache is None:
        return None
    model.backbone.eval()  # the fill runs the frozen prefix as training will: dropout off, BatchNorm fixed
    # A cold cache fills and a warm one loads: neither may change the random numbers training draws next.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        cache.prepare(graph.cache_boundaries(), batch_size=batch_size, quiet=console.quiet or not console.bars,
                      stage=stage)
    stats = cache.stats()
    console.line(f"activation cache: {stats['tier']} tier, {stats['bytes'] / 2**20:.0f} MiB at boundaries "
                 f"{stats['boundaries']} ({_cache_work(stats)}, {fill_note(graph, device)})")
    return cache


def _cache_work(stats: dict[str, Any]) -> str:
    """What preparing the cache did: entries filled (and in how long), entries reused from an earlier run's cache."""
    filled, reused = len(stats.get("filled", [])), len(stats.get("warm", []))
    entries = "entry" if filled == 1 else "entries"
    parts = [f"filled {filled} {entries} in {stats['fill_seconds']:.1f}s"] if filled else []
    if reused:
        parts.append(f"reused {reused} from {stats['root']}")
    return ", ".join(parts) or "nothing to fill"


def finish(trainer: Trainer, spec: Spec, *, pretrained: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Restore the best weights, WiSE-FT sweep (with `pretrained`, see `runtime.wise_ft`), test them, save the model
    (described by `spec`'s backbone and head; LoRA adapters also in peft's format), report and plots; returns the
    final metrics. Every data-parallel rank evaluates its shard; rank 0 writes."""
    # Here, not at the top: safetensors and matplotlib load only when a run gets this far (fast start-up and --help).
    from ftengine.runtime.adapters import ADAPTER_DIR, MERGED_DIR, save_adapter, save_merged
    from ftengine.runtime.export import HF_DIR, save_final_model
    from ftengine.runtime.wise_ft import format_sweep, sweep
    from ftengine.runtime.report import plot_history, write_report

    settings, graph, run_dir, world = trainer.settings, trainer.graph, trainer.run_dir, trainer.world
    world.barrier("finishing the run")  # rank 0's last checkpoint and metrics rows are on disk for every rank
    writes = world.main
    rows = MetricsLog.read(run_dir / "metrics.jsonl")
    weights_stage = min(trainer.pos.stage, len(graph.stages) - 1)
    final_row = rows[-1] if rows else {}
    best_path = run_dir / "checkpoints" / BEST / "checkpoint.pt"
    if settings.restore_best and best_path.is_file():
        best = load_checkpoint(best_path)
        trainer.weights.restore(best, str(best_path))
        trainer.optimizer.reload_params()
        weights_stage, final_row = best["stage"], best["metrics"]
    ensemble = None
    if pretrained is not None and spec.output.wise_ft:
        ensemble = sweep(trainer, pretrained, spec.output.wise_ft, graph.stages[weights_stage])
        if ensemble is not None and writes:
            write_json(run_dir / "wise_ft.json", {"best": ensemble.best, "seconds": ensemble.seconds,
                                                  "rows": ensemble.rows})
            trainer.console.line(format_sweep(ensemble, settings.early_stopping_metric))
    task = trainer.data.task
    if task.kind == "multilabel":  # the decision threshold is chosen on validation, with the weights that ship
        val = trainer.evaluate_split("validation", graph.stages[weights_stage])
        if val is not None:
            trainer.data.task = task = task.with_threshold(choose_threshold(val.labels, val.probs))
    test = trainer.evaluate_split("test", graph.stages[weights_stage])
    metrics: dict[str, Any] = {k: final_row.get(k) for k in (*metric_names(task.kind), "epoch", "stage")}
    metrics["epochs_run"] = len(rows)
    extra = {"weights": "best" if settings.restore_best else "last", "epoch": final_row.get("epoch")}
    if ensemble is not None:  # the final model is the chosen mix: its validation numbers are the run's
        chosen = next(r for r in ensemble.rows if r["alpha"] == ensemble.best)
        metrics.update({k: v for k, v in chosen.items() if k != "alpha"}, wise_ft_alpha=ensemble.best,
                       wise_ft=ensemble.rows, wise_ft_seconds=round(ensemble.seconds, 3))
        extra.update(wise_ft_alpha=ensemble.best, wise_ft=ensemble.rows)
    if test is not None:
        metrics.update(test.metrics("test_"))
    if not writes:
        return metrics
    if test is not None:
        write_report(run_dir, test.report, split="test", plots=settings.plots, extra=extra)
    folder = save_final_model(run_dir, trainer.model, spec, trainer.data.labels, task=task)
    if spec.adapters is not None:
        save_adapter(folder / ADAPTER_DIR, trainer.model.backbone)
        if spec.output.merge_adapters and spec.backbone.kind == "hf":
            save_merged(folder / HF_DIR, folder / ADAPTER_DIR, folder / MERGED_DIR)
    if settings.plots and rows:
        plot_history(run_dir / "metrics.jsonl", run_dir / "plots")
    if not settings.save_best and best_path.is_file():
        best_path.unlink()
    return metrics


def summary_line(metrics: dict[str, Any], run_dir: Path) -> str:
    """The closing lines: validation (and test) numbers, time, where the results are."""
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return f"{key} {value:.4f}" if isinstance(value, float) else f"{key} -"

    shown = [k for k in metrics if k.startswith("val_") and k != "val_loss"] or ["val_accuracy", "val_macro_f1"]
    parts = [fmt(k) for k in shown]
    if any(metrics.get("test_" + k[4:]) is not None for k in shown):
        parts += [fmt("test_" + k[4:]) for k in shown]
    minutes, seconds = divmod(metrics.get("total_seconds", 0.0), 60)
    return (f"done in {int(minutes)}m{seconds:04.1f}s (best epoch {metrics.get('epoch')}, stage "
            f"{metrics.get('stage')}): " + "  ".join(parts) + f"\nrun directory: {run_dir}")
