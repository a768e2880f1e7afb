"""The training loop: stages of epochs of steps, as the execution graph says.

Everything clever happens elsewhere (planner: what trains at which LR; cache: frozen-prefix activations;
optimizer: one fused masked update). Per epoch this loop applies the stage (freeze, modes, LRs), trains on the
epoch's batches from where it left off, validates, logs one row, saves `best` when the metric improved and
`last` always, then moves its position on. The position is all a resumed run needs to continue exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftengine.data.bundle import is_empty
from ftengine.errors import RunError
from ftengine.planner.graph import ExecutionGraph, StagePlan
from ftengine.runtime.allocator import hand_back, release_free_heap
from ftengine.runtime.checkpoint import BEST, LAST, DeltaState, load_checkpoint, save_checkpoint
from ftengine.runtime.evaluate import Evaluation, autocast_context, evaluate, metric_names
from ftengine.runtime.distributed import World
from ftengine.runtime.freeze import apply_freeze, set_train_modes
from ftengine.runtime.grad_sync import GradSync
from ftengine.runtime.interrupts import Interrupted, StopRequest, diverged, interrupted
from ftengine.runtime.model import FineTuneModel, inputs_of, to_device
from ftengine.runtime.position import Position, Primed, read_after
from ftengine.runtime.run_dir import MetricsLog
from ftengine.runtime.param_groups import apply_stage_settings, lr_summary
from ftengine.runtime.progress import Console, format_epoch
from ftengine.runtime.schedule import Schedule, set_lrs
from ftengine.runtime.seeding import capture_rng
from ftengine.runtime.settings import TrainSettings
from ftengine.runtime.startup import Startup
from ftengine.runtime.tracker import Tracker, Verdict

# A non-finite step now and then is what optimizer.skip_nonfinite absorbs (one bad batch, an fp16 overflow); this
# many in a row means the run has diverged or the data hold NaN/inf, and further steps only burn time (or, with
# skipping off, write NaN weights). The run stops with exit 1; the last checkpoint is the last good one.
MAX_NONFINITE_STEPS = 5

if TYPE_CHECKING:  # annotations only: the optimizer (kernels) and the cache load when run_spec builds them
    from ftengine.data.bundle import DataBundle
    from ftengine.runtime.cache import ActivationCache
    from ftengine.runtime.optimizer import FlatOptimizer


@dataclass
class Trainer:
    """The pieces of one run, wired together by `run_spec`: the plan, the settings, and what applies them.

    A run from a checkpoint is constructed the same way, then `resume_from(state)` puts its position back.
    """

    settings: TrainSettings
    graph: ExecutionGraph
    model: FineTuneModel
    optimizer: FlatOptimizer
    schedule: Schedule
    tracker: Tracker
    data: DataBundle
    cache: ActivationCache | None  # None: no stage caches (or none is left to run)
    device: torch.device
    amp_dtype: torch.dtype | None
    prefix_dtype: torch.dtype | None  # the frozen prefix's autocast dtype (cache.fill_precision), None: fp32
    run_dir: Path
    console: Console
    log: MetricsLog
    weights: DeltaState  # what checkpoints store of the model
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    world: World = field(default_factory=World.solo)  # a data-parallel run's ranks (rank 0 writes the run directory)
    startup: Startup | None = None  # told when the first optimizer step is done
    pos: Position = field(default_factory=Position)
    best_stage: int | None = None  # stage whose weights checkpoints/best holds
    _stop: StopRequest = field(default_factory=StopRequest)
    _base_lrs: dict[str, float] = field(default_factory=dict)
    _last_row: dict[str, Any] = field(default_factory=dict)
    _epoch_seconds: float = 0.0
    _epoch_seen: int = 0
    _nonfinite_steps: int = 0  # consecutive optimizer steps with a NaN/inf loss or gradient (never checkpointed)
    _stopping: bool = False  # every rank agreed to stop after this step (Ctrl-C or SIGTERM on any of them)
    _handed_back: int = -1  # the stage whose unread memory `_hand_back` last gave back
    _sync: GradSync = field(init=False)
    stage_checksums: list[dict[str, Any]] = field(default_factory=list)  # data-parallel: per stage, every rank's

    def __post_init__(self) -> None:
        self._sync = GradSync(self.world, self.optimizer)

    def resume_from(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: its optimizer, tracker, position and loss scaler.

        The model weights are not here (`run_spec` restores them before the optimizer flattens them and the cache
        fills from them), nor the random state (restored last, after everything that may draw from it).
        """
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # another plan's parameter groups: the user's to fix, not a bug
            raise RunError(f"--resume: {self.run_dir}: the checkpoint's optimizer state does not fit this plan ({exc}); "
                           "resume with the spec the run started with, or start a new run (output.name=... or "
                           "output.overwrite=true)") from None
        self.tracker.load_state_dict(state["tracker"])
        self.pos, self.best_stage = Position(**state["progress"]), state["best_stage"]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # --- the loop ----------------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train from `pos` to the end of the plan (or early stop / max_steps)."""
        stages = self.graph.stages
        self.console.epochs(sum(s.epochs for s in stages), self.pos.epochs_done)
        self._stop = StopRequest(lambda: self.console.always(
            "ftengine: stopping after this step (Ctrl-C again to abort without saving)"))
        with self._stop:
            while not self.pos.finished and self.pos.stage < len(stages):
                stage = stages[self.pos.stage]
                if self.pos.epoch == 0 and self.pos.batches_done == 0:
                    self.tracker.start_stage()
                self._apply_stage(stage)
                if self.world.distributed and self.pos.epoch == 0 and self.pos.batches_done == 0:
                    self._check_replicas(stage)
                if self._handed_back != self.pos.stage:  # once per stage, a resumed one included
                    self._hand_back(stage)
                hit_max_steps = self._train_epoch(stage)
                val = self._validate(stage)
                verdict = self.tracker.update(self._watched(val), self.pos.epochs_done + 1, stage) if val \
                    else Verdict(improved=True, stop_run=False, end_stage=False)
                self._log_epoch(stage, val, verdict)
                if verdict.improved and (self.settings.save_best or self.settings.restore_best) \
                        and not self._nonfinite_steps:  # no NaN state over the best weights
                    self.best_stage = self.pos.stage
                    if self.world.main:
                        save_checkpoint(self.run_dir, BEST, {**self.weights.state(), "stage": self.pos.stage,
                                                                 "metrics": self._last_row})
                self.pos.next_epoch(stage.epochs, end_stage=verdict.end_stage, stop=verdict.stop_run or hit_max_steps,
                                    last_stage=self.pos.stage == len(stages) - 1)
                self._save_last()
                if self.pos.stage != stage.index:
                    self._release_cache(stage)
                self.console.epoch_done()
                if verdict.stop_run:
                    self.console.line(f"early stopping: {self.settings.early_stopping_metric} has not improved "
                                      f"for {self.tracker.patience} epochs (best {self.tracker.best:.4f})")
        release_free_heap()  # the evaluation and export after this start from a heap the size of what they hold
        self.console.close()

    def _release_cache(self, finished: StagePlan) -> None:
        """Free the cached activations of a finished stage's boundary when no later stage reads them."""
        later = {s.cache.boundary for s in self.graph.stages[self.pos.stage:] if s.cache.allowed}
        if self.cache is not None and finished.cache.allowed and finished.cache.boundary not in later:
            self.cache.release(finished.cache.boundary)

    def _apply_stage(self, stage: StagePlan) -> None:
        apply_freeze(self.model, self.graph, stage)
        if self.weights.mark_trainable() and self.world.main:
            self._widen_best()
        self._base_lrs = apply_stage_settings(self.optimizer, stage)

    def _hand_back(self, stage: StagePlan) -> None:
        """Give back what the rest of the run will not touch: the weights below the cached boundaries this stage and
        every later one start at, and the heap's free pages (`allocator.hand_back`)."""
        start = min(self.boundary("train", later) for later in self.graph.stages[stage.index:])
        keeps = self.settings.save_last or self.settings.save_best or self.settings.restore_best
        hand_back(self.optimizer, {g.name for g in self.graph.groups[:start]}, self.weights if keeps else None)
        self._handed_back = stage.index

    def _check_replicas(self, stage: StagePlan) -> None:
        """Data-parallel: every rank's parameters are equal as a stage starts (checked, recorded, else an error)."""
        sums = self.world.check_same_model(self.model, f"the start of stage {stage.index} ({stage.name})")
        self.stage_checksums.append(dict(stage=stage.index, step=self.pos.global_step, checksums=sums,
                                         trainable_bytes=self._sync.trainable_bytes()))

    def _train_epoch(self, stage: StagePlan) -> bool:
        """Train the rest of this epoch; True when `training.max_steps` was reached."""
        pos, accum = self.pos, self.settings.grad_accum_steps
        loader = self._train_loader()
        sizes, start = loader.global_sizes, pos.batches_done  # examples of each whole batch (every rank's share)
        total = pos.batches_done + len(loader)
        set_train_modes(self.model, self.graph, stage)
        started, seen = time.perf_counter(), 0
        # Summed on the device (no host sync per step), folded into pos.loss_sum every log_every steps.
        running = torch.as_tensor(float(pos.running_loss), dtype=torch.float32, device=self.device)
        step_loss = torch.zeros((), dtype=torch.float32, device=self.device)  # this step's summed loss, this rank
        finite = torch.ones((), dtype=torch.bool, device=self.device)  # every loss of this step so far was finite
        bar = self.console.bar(loader, total=total, initial=pos.batches_done, desc=f"{stage.name} e{pos.epoch + 1}")
        for i, batch in enumerate(bar, start=pos.batches_done):
            first = i - i % accum
            in_step = min(first + accum, total) - first  # micro-batches in this optimizer step (last may be short)
            whole = sizes[i - start]
            if not is_empty(batch):  # a data-parallel rank's share of a short last batch can be empty
                n = int(batch["labels"].shape[0])
                loss, scaled = self._loss(batch, stage, whole)
                self._backward(scaled / in_step)
                step_loss += loss.detach() * n
                finite &= torch.isfinite(loss.detach())
            elif self._weighted_loss():
                self._batch_weight(torch.zeros((), device=self.device))  # the other ranks' collective
            pos.examples, seen = pos.examples + whole, seen + whole
            if i + 1 < first + in_step:
                continue
            agreed = self._sync.step(stop=self._stop.requested, finite=finite, loss_sum=step_loss)
            running += agreed.loss_sum
            self._stopping = agreed.stop
            self._step(stage, agreed.finite)
            step_loss.zero_()
            finite.fill_(True)
            pos.batches_done = i + 1
            every = self.settings.checkpoint_every_steps
            if pos.global_step % self.settings.log_every == 0:  # fold on a fixed clock: same sums on resume
                pos.loss_sum, running = pos.loss_sum + float(running), torch.zeros_like(running)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{pos.loss_sum / pos.examples:.4f}")
            pos.running_loss = running  # a checkpoint keeps the unfolded part as it is
            if every and pos.global_step % every == 0 and pos.batches_done < total:
                self._save_last()
            if self._stopping:
                self._save_last()
                raise self._interrupted()
            if self._max_steps_reached():
                break
        pos.loss_sum, pos.running_loss = pos.loss_sum + float(running), 0.0
        if hasattr(bar, "close"):
            bar.close()
        self._epoch_seconds, self._epoch_seen = time.perf_counter() - started, seen
        return self._max_steps_reached()

    def _max_steps_reached(self) -> bool:
        return self.settings.max_steps is not None and self.pos.global_step >= self.settings.max_steps

    def _step(self, stage: StagePlan, loss_finite: torch.Tensor) -> None:
        finite = read_after(loss_finite)  # read once the optimizer is launched (and has synced, if it does)
        set_lrs(self.optimizer, self._base_lrs, self.schedule.factor(self.pos.stage, self.pos.step_in_stage))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            info = self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            info = self.optimizer.step()
        self.optimizer.zero_grad()
        skipped = bool(info and info.get("skipped"))  # a non-finite grad norm (a GradScaler skip returns None)
        if skipped:
            self.pos.skipped_steps += 1
        self.pos.step_in_stage += 1
        self.pos.global_step += 1
        if self.startup is not None:
            self.startup.first_step()
        self._nonfinite_steps = 0 if finite() and not skipped else self._nonfinite_steps + 1
        if self._nonfinite_steps >= MAX_NONFINITE_STEPS:
            raise self._diverged()

    def _diverged(self) -> RunError:
        return diverged(self.run_dir, self.pos.global_step, self._nonfinite_steps, saved=self.settings.save_last)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    # --- forward passes ----------------------------------------------------------------------------------------

    def boundary(self, split: str, stage: StagePlan) -> int:
        """Where `split` batches start in `stage`: the cached boundary when the cache holds it, else 0."""
        point = stage.cache
        if self.cache is not None and point.allowed and self.cache.has(split, point.boundary):
            return point.boundary
        return 0

    def logits(self, batch: dict[str, Any], split: str, stage: StagePlan) -> torch.Tensor:
        """(B, C) logits, from cached activations where the stage allows it."""
        start = self.boundary(split, stage)
        if start:
            state = self.cache.lookup(split, start, batch["index"])
        else:
            state = inputs_of(to_device(batch, self.device))
        with autocast_context(self.device, self.amp_dtype):
            return self.model.forward_from(start, state, frozen_prefix=stage.frozen_prefix,
                                           prefix_dtype=self.prefix_dtype)

    def _loss(self, batch: dict[str, Any], stage: StagePlan, whole: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss over this batch, the loss to backward): the same tensor in one process; on a data-parallel
        rank its share of the whole batch's mean, so that the ranks' summed gradients are the whole batch's."""
        logits = self.logits(batch, "train", stage).float()
        targets = batch["labels"].to(self.device)
        weights = self.data.class_weights.to(self.device) if self._weighted_loss() else None
        loss = self.data.task.compute_loss(logits, targets, weight=weights)
        n = int(targets.shape[0])
        if n == whole and not self.world.distributed:
            return loss, loss
        if weights is None:
            return loss, (loss * (n / whole) if n != whole else loss)
        mine = weights[targets].sum()  # a weighted mean divides by the whole batch's weight, not this share's
        return loss, loss * (mine / self._batch_weight(mine.detach().clone()))

    def _weighted_loss(self) -> bool:
        return self.settings.balance == "loss_weights" and self.data.class_weights is not None

    def _batch_weight(self, mine: torch.Tensor) -> torch.Tensor:
        return self.world.all_reduce_(mine, what="summing the batch's loss weights")

    def evaluate_split(self, split: str, stage: StagePlan, *, interruptible: bool = False) -> Evaluation | None:
        """Evaluate `split` with the current weights (None when the split is absent)."""
        dataset = getattr(self.data, split, None)
        if dataset is None or len(dataset) == 0:
            return None
        self.model.eval()
        world = self.world
        if world.distributed:  # BatchNorm statistics that trained differ per rank: evaluate with rank 0's, as DDP does
            world.broadcast_model(self.model, buffers_only=True)
        loader = self.data.make_loader(split, self.settings.eval_batch_size, shuffle=False, seed=self.settings.seed,
                                       num_workers=self.settings.num_workers, pin_memory=self.device.type == "cuda",
                                       shard=(world.rank, world.size))
        with torch.random.fork_rng(devices=[]):  # creating a DataLoader iterator draws from the global RNG
            batches = (b for b in iter(loader) if not is_empty(b))
        # Ranks must not abandon the pass at different batches: a data-parallel run checks Ctrl-C after it.
        stop = (lambda: self._stop.requested) if interruptible and not world.distributed else (lambda: False)
        gather = self._gather_outputs if world.distributed else None
        return evaluate(lambda b: self.logits(b, split, stage), batches, self.data.labels, should_stop=stop,
                        task=self.data.task, gather=gather)

    def _gather_outputs(self, parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Every rank's (outputs, labels, index, loss sum) of its shard of a split, joined (all ranks get all)."""
        shards = self.world.gather_objects(parts, what="gathering evaluation outputs")
        outputs, labels, index = (torch.cat([s[k] for s in shards]) for k in range(3))
        return outputs, labels, index, sum(s[3] for s in shards)

    def _validate(self, stage: StagePlan) -> Evaluation | None:
        val = self.evaluate_split("validation", stage, interruptible=True)
        if val is None and self._stop.requested:  # one process only (a data-parallel pass is never abandoned)
            self._save_last()  # training part of the epoch is done; a resume validates first
            raise self._interrupted()
        return val

    def _train_loader(self) -> Any:
        """The training DataLoader for the current epoch, starting at `pos.batches_done`.

        Its batch order is a pure function of (seed, epoch), so a resumed run sees the batches an unbroken run saw.
        """
        world = self.world
        loader = self.data.make_loader("train", self.settings.batch_size, shuffle=True,
                                       seed=self.settings.seed, epoch=self.pos.epochs_done,
                                       skip_batches=self.pos.batches_done, num_workers=self.settings.num_workers,
                                       pin_memory=self.device.type == "cuda", shard=(world.rank, world.size))
        with torch.random.fork_rng(devices=[]):  # creating a DataLoader iterator draws from the global RNG
            return Primed(loader)

    def _watched(self, val: Evaluation) -> float:
        return val.metrics()[self.settings.early_stopping_metric]

    # --- logging and checkpoints -------------------------------------------------------------------------------

    def _log_epoch(self, stage: StagePlan, val: Evaluation | None, verdict: Verdict) -> None:
        pos = self.pos
        seconds = max(self._epoch_seconds, 1e-9)
        row = dict(stage=stage.name, stage_index=pos.stage, stage_epoch=pos.epoch + 1, stage_epochs=stage.epochs,
                   epoch=pos.epochs_done + 1, step=pos.global_step,
                   train_loss=pos.loss_sum / pos.examples if pos.examples else math.nan,
                   **(val.metrics() if val else dict.fromkeys(metric_names(self.data.task.kind))),
                   lr=lr_summary(self.optimizer), epoch_seconds=round(self._epoch_seconds, 3),
                   samples_per_second=round(self._epoch_seen / seconds, 2), best=verdict.improved and val is not None,
                   skipped_steps=pos.skipped_steps)
        self._last_row = row
        self.log.append(row)
        self.console.line(format_epoch(row))

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a resumed run restores (see `resume_from`); every rank calls it (the RNG states of all)."""
        progress = {**asdict(self.pos), "running_loss": float(self.pos.running_loss)}
        rngs = self.world.gather_objects(capture_rng(), what="collecting random states for a checkpoint")
        if not self.world.main:
            return {}
        return {**self.weights.state(), "optimizer": self.optimizer.state_dict(), "progress": progress,
                "tracker": self.tracker.state_dict(), "rng": rngs[0], "metrics_rows": self.log.rows,
                "best_stage": self.best_stage, "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                **({"world_size": self.world.size, "rank_rng": rngs} if self.world.distributed else {})}

    def _widen_best(self) -> None:
        """Groups unfrozen just now: the best checkpoint takes their still-pretrained weights along (see DeltaState)."""
        path = self.run_dir / "checkpoints" / BEST / "checkpoint.pt"
        if path.is_file():
            wider = self.weights.widen(load_checkpoint(path), str(path))
            if wider is not None:
                save_checkpoint(self.run_dir, BEST, wider)

    def _save_last(self) -> None:
        # Not mid-streak of non-finite steps: the checkpoint there stays the last good state (see _diverged).
        if self.settings.save_last and not self._nonfinite_steps:
            state = self.checkpoint_state()
            if self.world.main:
                save_checkpoint(self.run_dir, LAST, state)

    def _interrupted(self) -> Interrupted:
        if not self.world.main:
            return Interrupted([])  # rank 0 says it for the run
        where = f"stage {self.pos.stage} epoch {self.pos.epoch + 1} step {self.pos.global_step}"
        return interrupted(self.run_dir, where, saved=self.settings.save_last,
                           after_nonfinite=bool(self._nonfinite_steps),
                           nproc=self.world.size if self.world.distributed else None)
