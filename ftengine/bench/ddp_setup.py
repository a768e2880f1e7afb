"""What `ftengine bench ddp` hands each rank: the shared settings, picklable across the spawn."""

from __future__ import annotations

from dataclasses import dataclass

NUM_CLASSES = 3


@dataclass(frozen=True)
class Setup:
    """Everything a rank needs (picklable: it crosses the spawn)."""

    source: str  # model directory
    stages: list[list[str]]  # trainable groups per stage
    batch_size: int  # global batch (every rank trains batch_size / nproc examples per step)
    max_length: int
    vocab: int  # token ids are drawn below it
    steps: int  # per stage and variant, warm-up included
    warmup: int
    nproc: int
    variants: list[str]
    seed: int
    out: str  # rank 0 writes its JSON here
    fill_examples: int = 0  # tweets for the cache-fill measurement (0: skip it)
    fill_dir: str = ""  # the ranks' cache folder (cold)
