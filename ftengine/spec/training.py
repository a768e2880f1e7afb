"""Optimizer, schedule, training loop, activation cache and output settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ftengine.spec.base import MAX_ACCUM, MAX_BATCH, MAX_EPOCHS, MAX_MB, MAX_SEED, MAX_STEPS, MAX_THREADS, MAX_WORKERS, StrictModel


class L2SPSpec(StrictModel):
    """L2-SP (Li et al. 2018): decay the backbone toward its starting (pretrained) weights instead of toward zero."""

    strength: float = Field(gt=0.0)
    """alpha: AdamW `w -= lr * alpha * (w - w0)` each step (decoupled), SGD adds `alpha * (w - w0)` to the gradient.
    The strength of every pretrained backbone group's decaying parameters (not the `no_decay` ones), times its
    `multipliers`; those groups get it in place of `weight_decay`. The head (and LoRA adapters) have no pretrained
    value and keep plain `weight_decay`."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """Element type of the stored starting weights (bf16 halves their bytes: 2 B per trained parameter)."""
    multipliers: dict[str, float] = Field(default_factory=dict)
    """Selector -> multiplier of `strength` for the matching backbone groups (the product of every matching entry,
    as in a stage's `lr_multipliers`); 0 turns L2-SP off there and gives those groups plain `weight_decay` back.
    E.g. `{strength: 0.01, multipliers: {embeddings: 10, "encoder.layer.4-5": 0.5}}` holds the embeddings 10x
    closer to their start and lets the top two layers drift twice as far."""

    @field_validator("multipliers")
    @classmethod
    def _not_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v >= 0}
        if bad:
            raise ValueError(f"multipliers must be >= 0 (got {bad}); use 0 to turn L2-SP off for a group")
        return value


class OptimizerSpec(StrictModel):
    """The optimizer (one fused update for all layer groups)."""

    kind: Literal["adamw", "sgd"] = "adamw"
    """`adamw` (decoupled weight decay) or `sgd` (with momentum)."""
    lr: float = Field(default=2e-5, gt=0.0)
    """Base learning rate of the backbone's top group."""
    head_lr: float | None = Field(default=None, gt=0.0)
    """Learning rate of the new head (null: same as `lr`)."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """Decoupled weight decay."""
    no_decay: list[str] = Field(default_factory=lambda: ["bias", "norm"])
    """Parameters whose name contains any of these (case-insensitive) get no weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW moment coefficients."""
    eps: float = Field(default=1e-8, gt=0.0)
    """AdamW epsilon."""
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    """SGD momentum."""
    nesterov: bool = False
    """SGD Nesterov momentum."""
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this (null: no clipping)."""
    skip_nonfinite: bool = True
    """Skip (and report) a step whose gradients hold inf or NaN instead of applying it."""
    state_dtype: Literal["fp32", "bf16"] = "fp32"
    """Element type of the optimizer moments (bf16 halves their bytes)."""
    backend: Literal["auto", "native", "reference"] = "auto"
    """Kernel backend: auto picks native when the extension loaded."""
    l2sp: L2SPSpec | None = None
    """Decay toward the pretrained weights (e.g. `{strength: 0.01}`), fused into the optimizer step; null: off."""

    @model_validator(mode="after")
    def _betas_range(self) -> "OptimizerSpec":
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1) (got {list(self.betas)})")
        return self


class ScheduleSpec(StrictModel):
    """Learning-rate schedule."""

    kind: Literal["constant", "linear", "cosine"] = "linear"
    """Decay after warmup: `constant`, `linear` to zero, or `cosine` to zero."""
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Warmup as a fraction of the steps the schedule spans."""
    warmup_steps: int | None = Field(default=None, ge=0, le=MAX_STEPS)
    """Warmup steps (overrides `warmup_ratio`)."""
    per_stage: bool = True
    """Each stage runs its own warmup and decay over its own steps (fastai style); false spans the whole run."""


class EarlyStoppingSpec(StrictModel):
    """Stop when the validation metric stops improving."""

    metric: Literal["val_accuracy", "val_loss", "val_macro_f1", "val_micro_f1", "val_rmse", "val_mae", "val_pearson",
                    "val_spearman"] = "val_accuracy"
    """Validation metric watched by early stopping, `until_plateau` stages and best-checkpoint selection
    (classification: accuracy, macro_f1; multilabel: micro_f1, macro_f1; regression: rmse, mae, pearson,
    spearman; every task: loss)."""
    patience: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)
    """Epochs without improvement before the run stops (null: never stop early)."""
    min_delta: float = Field(default=0.0, ge=0.0)
    """Smallest change that counts as an improvement."""

    @property
    def mode(self) -> Literal["min", "max"]:
        """`min` for losses, `max` for scores."""
        return "min" if self.metric in ("val_loss", "val_rmse", "val_mae") else "max"


class TrainingSpec(StrictModel):
    """The training loop."""

    epochs: int = Field(default=3, ge=1, le=MAX_EPOCHS)
    """Default stage length in epochs when a stage gives none."""
    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH)
    """Examples per optimizer micro-batch; in a data-parallel run (`--nproc N`, torchrun) the global one, split over the
    processes (a multiple of N)."""
    eval_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    """Examples per evaluation batch (null: 2 x batch_size)."""
    grad_accum_steps: int = Field(default=1, ge=1, le=MAX_ACCUM)
    """Micro-batches accumulated per optimizer step."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast precision: auto = bf16 on CUDA, fp32 on CPU."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Seed of initialisation, shuffling and dropout."""
    device: str = "auto"
    """`auto`, `cpu`, `cuda` or `cuda:N`."""
    num_workers: int = Field(default=0, ge=0, le=MAX_WORKERS)
    """DataLoader worker processes."""
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    """CPU threads for torch (null: torch's default)."""
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    """Early stopping and best-model selection."""
    restore_best: bool = True
    """Load the best validation checkpoint at the end before testing and saving."""
    log_every: int = Field(default=50, ge=1, le=MAX_STEPS)
    """Steps between progress-bar metric updates."""
    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Stop after this many optimizer steps in total (smoke tests)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, dev: str) -> str:
        if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise ValueError(f"unknown device (got {dev!r}); use auto, cpu, cuda or cuda:N")
        return dev


class CacheSpec(StrictModel):
    """Frozen-layer activation cache."""

    enabled: Literal["auto", "on", "off"] = "auto"
    """auto caches where the planner allows it; on fails a plan that cannot cache; off never caches."""

    @field_validator("enabled", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML 1.1 reads unquoted on/off (and yes/no) as booleans; take them as the words the user wrote.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Element type of stored activations (bf16/fp16 are lossy and reported as such)."""
    fill_precision: Literal["fp32", "bf16", "auto"] = "auto"
    """Compute precision of the frozen prefix's forward pass (the cache fill, and the frozen prefix of a batch that is
    not cached): bf16 runs it under autocast, faster where the device computes bf16 natively (CPUs with AVX512-BF16 or
    AMX, GPUs from Ampere on) and ~5x slower where it is emulated; auto (the default) picks bf16 only where it is
    native (`ftengine info` says which). On the quickstart, 3 seeds on an H100, the bf16 fill ended 0.02 points from
    the fp32 fill's validation accuracy. Independent of `dtype`, what is stored. The trainable layers keep
    `training.precision`. fp32 makes cached and uncached training match to float noise on every machine."""
    tier: Literal["auto", "device", "host", "disk"] = "auto"
    """Where activations live: accelerator memory, (pinned) host memory or the entry's files on disk, read per batch.
    auto: accelerator memory, then host memory, on a GPU; on a CPU the files (the fill just wrote them, so they are in
    the page cache, and a host copy would hold them twice)."""
    budget_mb: int = Field(default=2048, ge=1, le=MAX_MB)
    """Most memory the cache may use in device or host tiers (the rest stays on disk)."""
    dir: str | None = None
    """Folder for persisted caches (null: $FTENGINE_CACHE_DIR or ~/.cache/ftengine)."""
    persist: bool = True
    """Keep caches on disk so the next run of the same spec starts warm."""


class OutputSpec(StrictModel):
    """Where a run writes its results."""

    dir: str = "runs"
    """Parent folder of run directories (relative to the current directory)."""
    name: str | None = None
    """Run directory name (null: the spec file's stem)."""
    overwrite: bool = False
    """Replace an existing run directory instead of refusing."""
    save_best: bool = True
    """Keep the best-validation checkpoint."""
    save_last: bool = True
    """Keep the last checkpoint (needed for --resume)."""
    checkpoint_every_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Also checkpoint every N optimizer steps (null: at each epoch end)."""
    plots: bool = True
    """Write PNG plots of the loss and metric curves."""
    wise_ft: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=list, max_length=101)
    """WiSE-FT (Wortsman et al. 2022): after training, evaluate backbone weights `(1-a) * pretrained + a *
    fine-tuned` for each coefficient `a` on the validation split and keep the best as the final model (the head
    keeps its fine-tuned weights at every `a`); e.g. `[0.0, 0.25, 0.5, 0.75, 1.0]`. Empty: off."""
    merge_adapters: bool = False
    """Also save the backbone with its LoRA adapters merged into the base weights (`model/merged/`,
    `save_pretrained` of peft's `merge_and_unload()`)."""
