"""Spec language: Pydantic models only (no torch import here)."""

from ftengine.spec.backbone import BackboneSpec, HFBackboneSpec, ModuleBackboneSpec, TorchvisionBackboneSpec
from ftengine.spec.data import (
    AugmentSpec,
    DataSpec,
    DigitsDataSpec,
    ImageCsvDataSpec,
    ImageFolderDataSpec,
    SplitSpec,
    TextDataSpec,
)
from ftengine.spec.freeze import FreezeSpec, StageSpec
from ftengine.spec.head import HeadSpec
from ftengine.spec.loader import apply_overrides, load_spec, read_spec_file, validate_spec
from ftengine.spec.model import Spec
from ftengine.spec.paths import resolve_path
from ftengine.spec.training import (
    CacheSpec,
    EarlyStoppingSpec,
    OptimizerSpec,
    OutputSpec,
    ScheduleSpec,
    TrainingSpec,
)

__all__ = [
    "AugmentSpec", "BackboneSpec", "CacheSpec", "DataSpec", "DigitsDataSpec", "EarlyStoppingSpec", "FreezeSpec",
    "HFBackboneSpec", "HeadSpec", "ImageCsvDataSpec", "ImageFolderDataSpec", "ModuleBackboneSpec", "OptimizerSpec",
    "OutputSpec", "ScheduleSpec", "Spec", "SplitSpec", "StageSpec", "TextDataSpec", "TorchvisionBackboneSpec",
    "TrainingSpec", "apply_overrides", "load_spec", "read_spec_file", "resolve_path", "validate_spec",
]
