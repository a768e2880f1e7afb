"""Optimizer workbench: FlatOptimizer (native / reference) against torch.optim.AdamW for-loop, foreach and fused.

    python bench/optimizer.py --quick                  # BERT-base, 14 and 26 groups, fp32 and bf16, 0/50% frozen
    python bench/optimizer.py                          # the full sweep: BERT-base and ResNet-50, 1/14/26/100 groups
    python bench/optimizer.py --device cuda
    ftengine bench optimizer ...                       # same options, same function

Every implementation is validated against the PyTorch reference on a small replica of each case before it is
timed. Results: bench/results/optimizer-<device>-<time>.json (device, versions, load average, settings, rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ftengine.cli.bench import add_optimizer_arguments  # noqa: E402
from ftengine.kernels.optim_bench import run_sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_optimizer_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="result file (default bench/results/optimizer-...json)")
    args = parser.parse_args()
    result = run_sweep(args, log=lambda line: print(line, flush=True))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"optimizer-{args.device.replace(':', '')}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
