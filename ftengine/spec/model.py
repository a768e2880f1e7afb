"""The root `Spec`: one fine-tuning job, as checked into a repository."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ftengine.spec.adapters import AdapterSpec
from ftengine.spec.backbone import BackboneSpec
from ftengine.spec.base import StrictModel
from ftengine.spec.data import DataSpec
from ftengine.spec.freeze import FreezeSpec
from ftengine.spec.head import HeadSpec
from ftengine.spec.paths import is_package_path, package_path_problem
from ftengine.spec.training import CacheSpec, OptimizerSpec, OutputSpec, ScheduleSpec, TrainingSpec


class Spec(StrictModel):
    """A fine-tuning job: backbone, head, data, freeze plan and training settings."""

    description: str | None = None
    """Free text shown by `ftengine plan`."""
    backbone: Annotated[BackboneSpec, Field(discriminator="kind")]
    """The pretrained model to fine-tune (`kind`: hf, torchvision or module)."""
    head: HeadSpec = Field(default_factory=HeadSpec)
    """The new classification head."""
    data: Annotated[DataSpec, Field(discriminator="kind")]
    """The labelled data (`kind`: text, image_folder, image_csv or sklearn_digits)."""
    adapters: AdapterSpec | None = None
    """Low-rank adapters (LoRA through peft) trained instead of the base weights of the groups they adapt."""
    freeze: FreezeSpec = Field(default_factory=lambda: FreezeSpec(preset="head_then_full"))
    """Which layer groups train in which stage, and their learning rates."""
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    """Optimizer settings."""
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    """Learning-rate schedule."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Training loop settings."""
    cache: CacheSpec = Field(default_factory=CacheSpec)
    """Frozen-layer activation cache."""
    output: OutputSpec = Field(default_factory=OutputSpec)
    """Run directory and checkpoints."""


def cross_section_problems(spec: Spec) -> list[tuple[str, str]]:
    """Checks that span sections and need no model: (dotted path, problem text) pairs."""
    problems: list[tuple[str, str]] = []
    text_data = spec.data.kind == "text"
    image_backbone = spec.backbone.kind in ("torchvision",)
    if text_data and image_backbone:
        problems.append((
            "data.kind",
            f"text data needs a text backbone (got data kind 'text' with backbone kind '{spec.backbone.kind}'); "
            "use backbone kind hf, or image data",
        ))
    if not text_data and spec.backbone.kind == "hf":
        problems.append((
            "data.kind",
            f"image data needs an image backbone (got data kind '{spec.data.kind}' with backbone kind 'hf'); "
            "use backbone kind torchvision or module, or data kind text",
        ))
    augment = getattr(spec.data, "augment", None)
    if augment is not None and augment.is_random and spec.cache.enabled == "on":
        problems.append((
            "cache.enabled",
            "random augmentation makes frozen activations differ every epoch, so they cannot be cached "
            "(got cache.enabled 'on' with data.augment on); set cache.enabled to auto or off, or drop the augmentation",
        ))
    problems.extend(_task_metric_problems(spec))
    problems.extend(_package_path_problems(spec.model_dump(exclude={"description"})))
    return problems


TASK_METRICS = {"classification": ("val_loss", "val_accuracy", "val_macro_f1"),
                "multilabel": ("val_loss", "val_micro_f1", "val_macro_f1"),
                "regression": ("val_loss", "val_rmse", "val_mae", "val_pearson", "val_spearman")}
"""The validation metrics each task logs (what early stopping may watch)."""


def _task_metric_problems(spec: Spec) -> list[tuple[str, str]]:
    """The early-stopping metric must be one the data's task measures."""
    task, metric = getattr(spec.data, "task", "classification"), spec.training.early_stopping.metric
    if metric in TASK_METRICS[task]:
        return []
    return [("training.early_stopping.metric", f"a {task} run does not measure {metric} (got data.task '{task}'); "
             f"use one of {', '.join(TASK_METRICS[task])}")]


def _package_path_problems(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every `pkg:` string in the spec (data files, checkpoints, factory kwargs) that leaves its package."""
    if isinstance(node, str):
        problem = package_path_problem(node) if is_package_path(node) else None
        return [] if problem is None else [(where, f"{problem} (got {node!r}); name a file or folder inside the "
                                                    "package as pkg:<package>/<path>, without '..'")]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list | tuple) else ()
    found: list[tuple[str, str]] = []
    for key, value in items:
        child = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        found.extend(_package_path_problems(value, child))
    return found
