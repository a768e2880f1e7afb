"""`TrainSettings`: the few numbers and switches the training loop reads, taken from the spec once.

The loop's other input is the plan (`ExecutionGraph`: stages, groups, learning rates, cache points, frozen-layer
modes). Defaults that depend on other settings are resolved here and nowhere else (the evaluation batch size).
"""

from __future__ import annotations

from dataclasses import dataclass

from ftengine.spec import Spec


@dataclass(frozen=True)
class TrainSettings:
    """What `Trainer` needs besides the plan, resolved from `training`, `output` and `data`.

    Attributes:
        batch_size: training micro-batch size (`training.batch_size`).
        eval_batch_size: batch size for validation, test, cache fills, eval and predict
            (`training.eval_batch_size`, default twice `batch_size`: no activations are kept for backward).
        grad_accum_steps: micro-batches per optimizer step.
        seed: seeds the batch order (a pure function of seed and epoch) and the run's random state.
        num_workers: DataLoader worker processes.
        log_every: optimizer steps between folds of the running loss into the logged sum (and the progress bar).
        max_steps: stop the run after this many optimizer steps (None: run every stage to its end).
        early_stopping_metric: the validation metric the tracker watches (`val_accuracy`, `val_loss`, ...).
        restore_best: test and export the best validation epoch's weights instead of the last.
        save_best: keep the best-validation checkpoint after the run.
        save_last: write the `last` checkpoint (what `--resume` continues from).
        checkpoint_every_steps: also write `last` every N optimizer steps (None: at epoch ends only).
        plots: write PNG plots of the training curves and the confusion matrix.
        balance: `data.balance`; `loss_weights` weighs the loss by inverse class frequency.
    """

    batch_size: int
    eval_batch_size: int
    grad_accum_steps: int
    seed: int
    num_workers: int
    log_every: int
    max_steps: int | None
    early_stopping_metric: str
    restore_best: bool
    save_best: bool
    save_last: bool
    checkpoint_every_steps: int | None
    plots: bool
    balance: str

    @classmethod
    def from_spec(cls, spec: Spec) -> TrainSettings:
        """The settings of `spec` (the only place the loop's settings are read from a spec)."""
        training, output = spec.training, spec.output
        return cls(
            batch_size=training.batch_size, eval_batch_size=training.eval_batch_size or 2 * training.batch_size,
            grad_accum_steps=training.grad_accum_steps, seed=training.seed, num_workers=training.num_workers,
            log_every=training.log_every, max_steps=training.max_steps,
            early_stopping_metric=training.early_stopping.metric, restore_best=training.restore_best,
            save_best=output.save_best, save_last=output.save_last,
            checkpoint_every_steps=output.checkpoint_every_steps, plots=output.plots, balance=spec.data.balance,
        )
