"""The final model of a run, in a form that reloads without ftengine's training state.

    model/model.safetensors   every tensor of the FineTuneModel (`backbone.*`, `head.*`), cloned and contiguous
    model/head.json           what rebuilds the head: head spec, classes, feature size, backbone spec, and the task
                              (kind, loss, the multilabel threshold chosen on validation, the regression
                              target's training mean and std, which predictions undo)
    model/backbone/           hf backbones only: `save_pretrained` of the fine-tuned transformers model and
                              its tokenizer, loadable with `transformers.AutoModel.from_pretrained`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ftengine.runtime.adapters import base_state
from ftengine.runtime.checkpoint import model_state

MODEL_DIR, WEIGHTS, HEAD_CONFIG, HF_DIR = "model", "model.safetensors", "head.json", "backbone"


def save_final_model(run_dir: Path, model: nn.Module, spec: Any, labels: list[str], task: Any = None) -> Path:
    """Write `model/` (see module docs); returns the folder.

    Args:
        task: the run's `TaskInfo` (multilabel threshold, regression normalisation); None: classification.
    """
    folder = run_dir / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model_state(model), str(folder / WEIGHTS), metadata={"format": "ftengine.FineTuneModel"})
    config = {"head": spec.head.model_dump(mode="json"), "num_classes": len(labels), "labels": list(labels),
                  "feature_dim": int(model.backbone.feature_dim), "backbone": spec.backbone.model_dump(mode="json"),
              "task": task.to_dict() if task is not None else {"kind": "classification"}}
    (folder / HEAD_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    if spec.backbone.kind == "hf":
        hf_dir = folder / HF_DIR
        original = model.backbone.model
        # Storage slices, not clones: the flat optimizer's parameters are views into one buffer, which safetensors
        # refuses to save, and clones would hold every weight twice while it is written.
        # LoRA runs: the base model's own weights and names (the adapter is saved on its own, in peft's format).
        state = base_state(original)
        from transformers.utils import logging as hf_logging

        was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the run prints its own progress; no "Writing model shards" bar
        try:
            original.save_pretrained(str(hf_dir), state_dict=state)
        finally:
            if was_on:
                hf_logging.enable_progress_bar()
        tokenizer = model.backbone.tokenizer
        if tokenizer is not None:
            tokenizer.save_pretrained(str(hf_dir))
    return folder


def load_task(run_dir: Path) -> dict[str, Any] | None:
    """The task saved with a run's model (None: a run from before tasks, i.e. classification)."""
    path = run_dir / MODEL_DIR / HEAD_CONFIG
    return json.loads(path.read_text()).get("task") if path.is_file() else None


def load_final_weights(run_dir: Path, model: nn.Module) -> None:
    """Load `model/model.safetensors` into a FineTuneModel of the same structure (strict)."""
    state = load_file(str(run_dir / MODEL_DIR / WEIGHTS))
    model.load_state_dict(state, strict=True)
