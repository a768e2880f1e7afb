"""Stage drafts: explicit `freeze.stages` as written, or a preset expanded over the backbone's groups.

Preset recipes (backbone groups counted among the *used* ones, see `unused_groups`):

- `feature_extraction`: one stage, head only, for `training.epochs`.
- `full_finetune`: one stage, everything, for `training.epochs`.
- `head_then_full`: the head alone for `head_epochs`, then everything for `stage_epochs` at
  `unfrozen_lr_scale` (a fresh head first, so its random gradients do not wreck the pretrained
  features; fastai's `fine_tune`; LP-FT, Kumar et al. 2022: linear probe, then fine-tune).
- `gradual_unfreeze`: the head alone for `head_epochs`, then each stage adds the next
  `groups_per_stage` backbone groups top-down (ULMFiT), for `stage_epochs` each at `unfrozen_lr_scale`,
  until `max_unfrozen` groups (default: all) train. The embeddings are the bottom group, so they unfreeze
  last; `max_unfrozen` below the group count keeps them (and whatever else is below) frozen, which also
  keeps a frozen prefix whose activations can be cached.

Single-stage presets run `training.epochs`; multi-stage presets use `head_epochs`/`stage_epochs` so a
stage's length never depends on which other settings happen to be spelled out in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ftengine.planner.selectors import HEAD
from ftengine.spec import Spec


@dataclass(frozen=True)
class StageDraft:
    """A stage before its selectors are resolved.

    Attributes:
        where: spec location for messages (`freeze.stages[1]`, or `freeze.preset` for preset stages).
        name: label for plans and logs.
        selectors: what trains (selector strings).
        epochs: stage length (the most, with `until_plateau`).
        until_plateau: end early when validation stops improving.
        patience: epochs without improvement before an `until_plateau` stage ends.
        lr_scale: multiplier on every learning rate in the stage.
        lr_multipliers: selector -> multiplier.
    """

    where: str
    name: str
    selectors: tuple[str, ...]
    epochs: int
    until_plateau: bool = False
    patience: int | None = None
    lr_scale: float = 1.0
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)


def draft_stages(spec: Spec, used_backbone: Sequence[str]) -> list[StageDraft]:
    """The spec's stages as drafts: written-out stages, or the preset expanded over `used_backbone`.

    Args:
        spec: the validated spec.
        used_backbone: backbone groups that can train (input to output).
    """
    freeze, training = spec.freeze, spec.training
    if freeze.stages:
        drafts = []
        for i, stage in enumerate(freeze.stages):
            patience = None
            if stage.until_plateau:
                patience = stage.patience or training.early_stopping.patience or 1
            drafts.append(StageDraft(
                where=f"freeze.stages[{i}]", name=stage.name or f"stage{i}", selectors=tuple(stage.trainable),
                epochs=stage.epochs or training.epochs, until_plateau=stage.until_plateau, patience=patience,
                lr_scale=stage.lr_scale, lr_multipliers=dict(stage.lr_multipliers)))
        return drafts
    where, scale = "freeze.preset", freeze.unfrozen_lr_scale
    if freeze.preset == "feature_extraction":
        return [StageDraft(where, "head", (HEAD,), training.epochs)]
    if freeze.preset == "full_finetune":
        return [StageDraft(where, "full", ("all",), training.epochs)]
    head = StageDraft(where, "head", (HEAD,), freeze.head_epochs)
    if freeze.preset == "head_then_full":
        return [head, StageDraft(where, "full", ("all",), freeze.stage_epochs, lr_scale=scale)]
    # gradual_unfreeze: top-down, groups_per_stage more each stage, up to max_unfrozen.
    limit = min(freeze.max_unfrozen or len(used_backbone), len(used_backbone))
    drafts = [head]
    count = 0
    while count < limit:
        count = min(count + freeze.groups_per_stage, limit)
        top = tuple(used_backbone[len(used_backbone) - count:])
        name = "all" if count == len(used_backbone) else f"top{count}"
        drafts.append(StageDraft(where, name, (*top, HEAD), freeze.stage_epochs, lr_scale=scale))
    return drafts
