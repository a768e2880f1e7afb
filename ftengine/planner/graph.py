"""The execution graph: what a run will do, as names and numbers (no tensors, no modules).

The runtime applies it (freeze masks, per-group learning rates, cache points, frozen-layer modes, the cache's
settings); `planner.describe.describe(graph)` is what a person reads before spending compute; `to_dict()` is what
golden tests compare and what a run writes to `plan.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ftengine.planner.selectors import HEAD

HEAD_PREFIX = "head."
"""Every parameter of the classification head is named `head.<...>` in the fine-tuned model."""

BACKBONE_PREFIX = "backbone."
"""Backbone parameters are `backbone.<name as in backbone.named_parameters()>` in the fine-tuned model."""


@dataclass(frozen=True)
class GroupInfo:
    """One layer group of the model being fine-tuned.

    Attributes:
        name: group name (`encoder.layer.3`; the head is `head`, always last).
        index: position, input to output.
        num_params: scalar parameters (the head's is None until the number of classes is known).
        param_names: backbone parameter names as in `backbone.named_parameters()`; empty for the head,
            which owns every parameter under `head.`.
        used: False for a group whose output the head never reads (a BERT pooler under mean pooling):
            it gets no gradient, so it never trains and is left out of layer-wise decay.
    """

    name: str
    index: int
    num_params: int | None
    param_names: tuple[str, ...]
    used: bool = True


@dataclass(frozen=True)
class GroupPlan:
    """One group's settings in one stage.

    Attributes:
        name: the group.
        trainable: whether it trains in this stage (frozen groups stay registered with the optimizer).
        lr: its peak learning rate in this stage (before the schedule's warmup/decay factor); computed
            for frozen groups too, 0.0 for unused ones.
        weight_decay: decoupled weight decay (parameters matching `optimizer.no_decay` get 0 regardless).
    """

    name: str
    trainable: bool
    lr: float
    weight_decay: float


@dataclass(frozen=True)
class CachePoint:
    """Where a stage's frozen-prefix activations could be cached.

    Attributes:
        boundary: index of the first group that runs live; activations entering it can be cached.
        allowed: whether caching is correct here (the prefix is frozen and deterministic) and switched on.
        reason: one line saying why, or why not.
        bytes_per_example: activation bytes per example at the boundary (text: at `data.max_length`
            tokens, an upper bound since batches are padded only to their longest example); None when
            there is nothing to cache.
    """

    boundary: int
    allowed: bool
    reason: str
    bytes_per_example: int | None


@dataclass(frozen=True)
class CachePlan:
    """How the run's activation cache is set up: `ActivationCache` is built from this alone, so `plan.json` shows
    what ran (the spec's `cache` section, as planned).

    Attributes:
        enabled: `auto` (cache where a stage allows it), `on` (the plan failed unless it could) or `off` (never).
        dtype: element type stored (`fp32` lossless; `bf16`, `fp16` lossy).
        tier: where entries live: `auto`, `device`, `host` or `disk`.
        budget_mb: most MiB the device and host tiers hold together (the rest is read from disk per batch).
        dir: folder of persisted entries as configured (None: `$FTENGINE_CACHE_DIR` or `~/.cache/ftengine`,
            resolved when the cache opens, so the plan does not depend on the machine).
        persist: keep entries for later runs (else they live in the run directory until the run finishes).
        fill_precision: compute precision of the frozen prefix (`fp32`, `bf16`, or `auto`: bf16 where the device
            computes it natively, decided when the run starts).
    """

    enabled: str
    dtype: str
    tier: str
    budget_mb: int
    dir: str | None
    persist: bool
    fill_precision: str = "auto"


@dataclass(frozen=True)
class L2SPPlan:
    """L2-SP (decay toward the starting weights) as planned: the same in every stage.

    Attributes:
        dtype: element type of the stored starting weights (`fp32` or `bf16`).
        strength: `optimizer.l2sp.strength`, before the multipliers.
        groups: (group, strength) for every used pretrained backbone group, input to output: the spec's strength
            times its matching `optimizer.l2sp.multipliers`; 0.0 where a multiplier turns L2-SP off (plain
            `weight_decay` there). The head, LoRA adapter groups and unused groups are never listed.
    """

    dtype: str
    strength: float
    groups: tuple[tuple[str, float], ...]

    def strength_of(self, group: str) -> float:
        """The L2-SP strength (alpha) of a layer group; 0.0 for a group without one (the head, adapters)."""
        return dict(self.groups).get(group, 0.0)

    @property
    def anchored(self) -> bool:
        """Whether any group decays toward its starting weights (every multiplier 0: none does)."""
        return any(s > 0 for _, s in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: `{dtype, strength, groups: {name: strength}}`."""
        return {"dtype": self.dtype, "strength": self.strength, "groups": dict(self.groups)}


@dataclass(frozen=True)
class StagePlan:
    """One training stage: a fixed set of trainable groups for a number of epochs.

    Attributes:
        index: stage number, from 0.
        name: label for plans and logs.
        epochs: epochs to run (with `until_plateau`, the most it may run).
        until_plateau: end early when the validation metric stops improving.
        patience: epochs without improvement before an `until_plateau` stage ends (None otherwise).
        groups: per-group settings, same order as `ExecutionGraph.groups`.
        trainable_params: scalar parameters that train (None while the head's size is unknown).
        frozen_prefix: leading backbone groups frozen in this stage (their output can be cached).
        cache: the cache decision at `frozen_prefix`.
        frozen_batchnorm: how BatchNorm layers of frozen groups run: `eval` (running statistics fixed) or
            `train` (statistics updated); the cache decision above assumed this.
        frozen_dropout: how dropout in frozen groups runs: `eval` (off) or `train` (on).
    """

    index: int
    name: str
    epochs: int
    until_plateau: bool
    patience: int | None
    groups: tuple[GroupPlan, ...]
    trainable_params: int | None
    frozen_prefix: int
    cache: CachePoint
    frozen_batchnorm: str
    frozen_dropout: str

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names of the groups that train in this stage."""
        return tuple(g.name for g in self.groups if g.trainable)

    def group(self, name: str) -> GroupPlan:
        """This stage's settings for group `name`."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group '{name}' in stage {self.index}")


@dataclass(frozen=True)
class ExecutionGraph:
    """A compiled freeze plan for one spec on one backbone structure.

    Attributes:
        groups: backbone groups input to output, then `head`.
        stages: the stages in order.
        cache: the activation cache's settings (each stage's `cache` says whether it reads one).
        warnings: plan notes that are not errors (re-frozen groups, settings without effect).
        backbone: one-line description of the backbone (kind, source, family).
        modality: `text` or `image`.
        num_classes: classes of the head (None: from the training labels, at run time).
        example_len: tokens per example used for cache sizes (text; `data.max_length`), or image side.
        l2sp: L2-SP's anchor dtype and per-group strengths (None: off).
    """

    groups: tuple[GroupInfo, ...]
    stages: tuple[StagePlan, ...]
    cache: CachePlan
    warnings: tuple[str, ...] = ()
    backbone: str = ""
    modality: str = ""
    num_classes: int | None = None
    example_len: int | None = None
    l2sp: L2SPPlan | None = None
    _param_group: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._param_group.update({p: g.name for g in self.groups for p in g.param_names})

    @property
    def group_names(self) -> tuple[str, ...]:
        """All group names, input to output, head last."""
        return tuple(g.name for g in self.groups)

    @property
    def cache_dtype(self) -> str:
        """Element type the cache stores (`fp32`, `bf16`, `fp16`): `cache.dtype`."""
        return self.cache.dtype

    @property
    def cache_budget_mb(self) -> int:
        """The cache's memory budget: `cache.budget_mb`."""
        return self.cache.budget_mb

    @property
    def backbone_groups(self) -> tuple[GroupInfo, ...]:
        """The backbone's groups (everything but the head)."""
        return self.groups[:-1]

    @property
    def total_params(self) -> int | None:
        """Scalar parameters in backbone and head (None while the head's size is unknown)."""
        counts = [g.num_params for g in self.groups]
        return None if None in counts else sum(c for c in counts if c is not None)

    def group_of(self, param_name: str) -> str:
        """Group owning a parameter, named as in the backbone (`encoder.layer.0...`) or the fine-tuned
        model (`backbone.encoder.layer.0...`, `head....`).

        Raises:
            KeyError: the name belongs to no group.
        """
        if param_name.startswith(HEAD_PREFIX):
            return HEAD
        name = param_name.removeprefix(BACKBONE_PREFIX) if param_name not in self._param_group else param_name
        return self._param_group[name]

    def cache_boundaries(self) -> tuple[int, ...]:
        """Sorted boundaries the run caches (fill them all in one pass over the frozen prefix)."""
        return tuple(sorted({s.cache.boundary for s in self.stages if s.cache.allowed}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stable keys; written to `plan.json` and compared by golden tests)."""
        out = {
            "version": 1,
            "backbone": self.backbone,
            "modality": self.modality,
            "num_classes": self.num_classes,
            "total_params": self.total_params,
            "cache_dtype": self.cache_dtype,
            "cache_budget_mb": self.cache_budget_mb,
            "cache": _cache_dict(self.cache),
            "example_len": self.example_len,
            "groups": [asdict(g) for g in self.groups],
            "stages": [asdict(s) for s in self.stages],
            "cache_boundaries": list(self.cache_boundaries()),
            "warnings": list(self.warnings),
        }
        for group in out["groups"]:
            group["param_names"] = list(group["param_names"])
        for stage in out["stages"]:
            stage["groups"] = list(stage["groups"])
        if self.l2sp is not None:  # only when on, so plans without L2-SP keep their exact form
            out["l2sp"] = self.l2sp.to_dict()
        return out


def _cache_dict(cache: CachePlan) -> dict[str, Any]:
    """`plan.json`'s cache section; the default fp32 fill is left out (plans written before it stay equal)."""
    out = asdict(cache)
    if out["fill_precision"] == "fp32":
        del out["fill_precision"]
    return out
