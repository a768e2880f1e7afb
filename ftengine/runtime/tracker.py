"""Validation bookkeeping: the best metric so far, early stopping, and `until_plateau` stage ends.

- Best: the best value of `training.early_stopping.metric` over the run (selects checkpoints/best and what
  `restore_best` loads). An epoch improves when it beats the best by more than `min_delta`.
- Early stopping (`patience` set): the run ends after `patience` epochs in a row without a new best. The count
  restarts when a stage starts, since a stage that trains different layers deserves its own chance.
- Plateau (`until_plateau` stages): the stage ends after its `patience` epochs in a row without beating the
  best value seen *within that stage*; the run then moves on to the next stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Verdict:
    """What one epoch's validation result means."""

    improved: bool
    """A new best over the run (save checkpoints/best)."""
    stop_run: bool
    """Early stopping: no new best for `patience` epochs."""
    end_stage: bool
    """Plateau: an `until_plateau` stage stopped improving."""


@dataclass
class Tracker:
    """Best-metric, early-stopping and plateau state (saved in checkpoints)."""

    mode: str
    min_delta: float = 0.0
    patience: int | None = None
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stage_best: float | None = None
    stage_bad_epochs: int = 0

    @classmethod
    def from_spec(cls, early_stopping: Any) -> Tracker:
        """From `spec.training.early_stopping`."""
        return cls(mode=early_stopping.mode, min_delta=early_stopping.min_delta, patience=early_stopping.patience)

    def _better(self, value: float, than: float | None) -> bool:
        if than is None:
            return math.isfinite(value)
        if self.mode == "max":
            return value > than + self.min_delta
        return value < than - self.min_delta

    def start_stage(self) -> None:
        """A new stage: restart the plateau reference and the early-stopping count."""
        self.stage_best, self.stage_bad_epochs, self.bad_epochs = None, 0, 0

    def update(self, value: float, epoch: int, stage: Any) -> Verdict:
        """Record one epoch's validation value.

        Args:
            value: the watched metric.
            epoch: epochs completed in the run (for `best_epoch`).
            stage: the StagePlan being run (`until_plateau`, `patience`).
        """
        improved = self._better(value, self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        if self._better(value, self.stage_best):
            self.stage_best, self.stage_bad_epochs = value, 0
        else:
            self.stage_bad_epochs += 1
        stop_run = self.patience is not None and self.bad_epochs >= self.patience
        end_stage = bool(stage.until_plateau) and self.stage_bad_epochs >= (stage.patience or 1)
        return Verdict(improved=improved, stop_run=stop_run, end_stage=end_stage)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        for key, value in state.items():
            setattr(self, key, value)
