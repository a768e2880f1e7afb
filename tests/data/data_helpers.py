"""Tiny data files for the data tests (written to tmp_path)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image

WORDS = ["good", "bad", "great", "awful", "fine", "movie", "film", "plot", "actor", "scene", "boring", "lovely",
         "terrible", "story", "slow", "fast", "music", "dull", "bright", "warm", "cold", "sharp", "funny", "sad",
         "long", "short", "loud", "quiet", "odd", "clever", "silly", "sweet"]


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    """Write ``rows`` (dicts with the same keys) as a CSV with a header."""
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def text_rows(n: int, seed: int = 0, labels: tuple[str, ...] = ("neg", "neu", "pos")) -> list[dict[str, str]]:
    """Random short texts (1 to 30 words) with labels cycling through ``labels`` (balanced)."""
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 21, 30]))),
             "label": labels[i % len(labels)]} for i in range(n)]


def save_image(path: Path, seed: int, size: tuple[int, int] = (16, 16)) -> torch.Tensor:
    """A random RGB image saved as PNG (lossless); returns its (3, H, W) uint8 pixels."""
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)
    return pixels.permute(2, 0, 1)


def make_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (16, 16)) -> dict[Path, torch.Tensor]:
    """``root/<class>/<i>.png`` random images, ``classes[name]`` of each; returns their pixels by path."""
    return {root / name / f"{i}.png": save_image(root / name / f"{i}.png", hash((name, i)) % 1000, size)
            for name, n in classes.items() for i in range(n)}
