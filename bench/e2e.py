"""End-to-end bench: ftengine vs a plain PyTorch loop vs HF Trainer (same model, data, recipe, seed).

    python bench/e2e.py                                   # feature extraction + gradual unfreezing, 800/400 tweets
    python bench/e2e.py --recipes full_finetune --train 400 --validation 200
    python bench/e2e.py --plot bench/results/e2e-cpu-20261123-111500.json   # redraw a chart

Writes bench/results/e2e-cpu-<time>.json and a .png beside it; prints one table row per (recipe, implementation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ftengine.bench.e2e import run_e2e_bench  # noqa: E402
from ftengine.bench.e2e_report import plot, table  # noqa: E402
from ftengine.bench.options import add_e2e_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_e2e_arguments(parser)
    parser.set_defaults(train=800, validation=400)
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/e2e-<device>-<time>.json)")
    parser.add_argument("--plot", type=Path, default=None, help="only redraw the chart and table of this result JSON")
    args = parser.parse_args(argv)
    if args.plot:
        result, out = json.loads(args.plot.read_text()), args.plot
    else:
        device = args.device.replace(":", "")
        out = args.out or Path(__file__).parent / "results" / f"e2e-{device}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        args.partial = out.with_suffix(".partial.jsonl")  # each finished run, as it finishes
        result = run_e2e_bench(args, log=lambda line: print(line, file=sys.stderr, flush=True))
        args.partial.unlink(missing_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result))
    print(f"wrote {out} and {out.with_suffix('.png').name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
