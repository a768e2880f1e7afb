"""The strict base model every spec section derives from, and the upper bounds of its numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Upper bounds of the spec's numbers: far above any real job, low enough that a typo (1e20) is an error at
# validation instead of an OverflowError deep inside torch or NumPy at run time (int64 / uint64 arithmetic).
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
"""Examples per batch (1,048,576)."""
MAX_STEPS = 10**12
"""Optimizer steps, warmup steps, logging and checkpoint intervals."""
MAX_ACCUM = 1 << 16
MAX_WORKERS = 1024
MAX_THREADS = 4096
MAX_ROWS = 10**12
MAX_TOKENS = 1 << 20
MAX_PIXELS = 16_384
"""Pixels per image side."""
MAX_WIDTH = 1 << 20
"""Hidden layer sizes and class counts."""
MAX_SEED = 2**63 - 1
"""torch generators take seeds below 2**64; derived seeds add small offsets."""
MAX_MB = 1 << 30
"""Megabytes (a petabyte)."""


class StrictModel(BaseModel):
    """Frozen, unknown keys forbidden, finite floats only, attribute docstrings become field descriptions."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
        allow_inf_nan=False,  # .inf / .nan in YAML would reach the optimizer as a learning rate
    )
