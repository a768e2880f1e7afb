"""Activation-cache benchmark: epoch time uncached vs cache-filling vs cached on the bundled MiniLM and tweets.

    python bench/bench_cache.py                       # all scenarios, writes bench/results/cache-<device>-<time>.json
    python bench/bench_cache.py --threads 2 --repeats 5 --scenarios bottom4_frozen
    ftengine bench cache ...                          # same options, same function

Scenarios: feature_extraction (whole backbone frozen: target >= 10x from epoch 2 on), bottom4_frozen
(embeddings + layers 0-3 frozen: target >= 80% of the derived bound 1/(1-f), f = frozen prefix share of an
uncached epoch), gradual_3stage (head, top 2, top 4 layers: the frozen forward runs once per boundary at most).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ftengine.runtime.cache.bench import add_arguments, run_cache_bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="result file (default bench/results/cache-...json)")
    args = parser.parse_args()
    result = run_cache_bench(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"cache-{args.device.replace(':', '')}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"targets: {result['targets']}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
