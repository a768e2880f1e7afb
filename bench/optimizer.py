"""Optimizer workbench: FlatOptimizer (native / reference) against torch.optim.AdamW for-loop, foreach and fused.

    python bench/optimizer.py --quick                  # BERT-base, 14 and 26 groups, fp32 and bf16, 0/50% frozen
    python bench/optimizer.py                          # the full sweep: BERT-base and ResNet-50, 1/14/26/100 groups
    python bench/optimizer.py --device cuda

The same command as `ftengine bench optimizer` (same options, same code), runnable from a checkout without
installing. Every implementation is validated against the PyTorch reference on a small replica of each case
before it is timed. Results: bench/results/optimizer-<device>-<time>.json and .png (device, versions, load
average, settings, rows), and a table of medians.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftengine.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["bench", "optimizer", *sys.argv[1:]]))
