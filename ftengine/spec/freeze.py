"""The freeze plan: which layer groups train in which stage, and at what learning rate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ftengine.spec.base import MAX_EPOCHS, MAX_WIDTH, StrictModel

Preset = Literal["feature_extraction", "full_finetune", "head_then_full", "gradual_unfreeze"]


class StageSpec(StrictModel):
    """One stage of training with a fixed set of trainable layer groups."""

    name: str | None = None
    """Label shown in plans and logs (default: stage index)."""
    trainable: list[str] = Field(min_length=1)
    """Selectors of what trains: group names, ranges (`encoder.layer.4-5`), globs (`encoder.*`), `re:<regex>`, `all`, `backbone`, `head`."""
    epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)
    """Epochs in this stage; with `until_plateau`, the most it may take (null: `training.epochs`)."""
    until_plateau: bool = False
    """End the stage early when the validation metric stops improving (`training.early_stopping.metric`)."""
    patience: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)
    """Epochs without improvement before an `until_plateau` stage ends (null: early-stopping patience, else 1)."""
    lr_scale: float = Field(default=1.0, gt=0.0)
    """Multiplier on every learning rate in this stage (e.g. 0.1 after unfreezing)."""
    lr_multipliers: dict[str, float] = Field(default_factory=dict)
    """Selector -> learning-rate multiplier for matching groups (applied after layer-wise decay)."""

    @field_validator("lr_multipliers")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"multipliers must be > 0 (got {bad})")
        return value


class FreezeSpec(StrictModel):
    """A staged freeze plan, written out or from a preset."""

    preset: Preset | None = None
    """A common recipe: `feature_extraction`, `full_finetune`, `head_then_full`, `gradual_unfreeze`."""
    stages: list[StageSpec] | None = None
    """Explicit stages, in order (give either `stages` or `preset`)."""
    groups_per_stage: int = Field(default=1, ge=1, le=MAX_WIDTH)
    """gradual_unfreeze: layer groups unfrozen per stage, top-down."""
    max_unfrozen: int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    """gradual_unfreeze: stop unfreezing after this many backbone groups (null: all)."""
    head_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    """Presets: epochs of the head-only first stage."""
    stage_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    """Presets: epochs of each later stage."""
    unfrozen_lr_scale: float = Field(default=1.0, gt=0.0)
    """Presets: `lr_scale` of the stages after the head-only one."""
    layerwise_lr_decay: float = Field(default=1.0, gt=0.0, le=1.0)
    """Discriminative LRs: group at depth d below the top backbone group gets lr * decay**d (head excluded)."""
    frozen_batchnorm: Literal["eval", "train"] = "eval"
    """Frozen BatchNorm layers: `eval` keeps running statistics fixed (needed for activation caching)."""
    frozen_dropout: Literal["eval", "train"] = "eval"
    """Dropout inside frozen layers: `eval` switches it off (needed for activation caching)."""

    @model_validator(mode="after")
    def _preset_or_stages(self) -> "FreezeSpec":
        if self.preset is None and not self.stages:
            raise ValueError("give either a preset (e.g. preset: head_then_full) or a list of stages")
        if self.preset is not None and self.stages:
            raise ValueError(f"give either preset or stages, not both (got preset {self.preset!r} and {len(self.stages)} stages)")
        return self
