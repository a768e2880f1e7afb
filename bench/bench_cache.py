"""Activation-cache benchmark: epoch time uncached vs cache-filling vs cached on the bundled MiniLM and tweets.

    python bench/bench_cache.py                       # all scenarios: bench/results/cache-<device>-<time>.json, .png
    python bench/bench_cache.py --threads 2 --repeats 5 --scenarios bottom4_frozen
    python -m pytest bench/bench_cache.py             # pytest-benchmark view, small (CACHE_EXAMPLES, default 128)

The script is the same command as `ftengine bench cache` (same options, same code). Scenarios:
feature_extraction (whole backbone frozen: target >= 10x from epoch 2 on), bottom4_frozen (embeddings + layers
0-3 frozen: target >= 80% of the derived bound 1/(1-f), f = frozen prefix share of an uncached epoch),
gradual_3stage (head, top 2, top 4 layers: the frozen forward runs once per boundary at most).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

from ftengine.bench.options import CACHE_SCENARIOS, add_cache_arguments  # noqa: E402


def _small_args(scenario: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cache_arguments(parser)
    return parser.parse_args(["--examples", os.environ.get("CACHE_EXAMPLES", "128"), "--repeats", "1",
                              "--threads", os.environ.get("CACHE_THREADS", "2"), "--scenarios", scenario])


@pytest.mark.parametrize("scenario", CACHE_SCENARIOS)
def test_cache_scenario_once(benchmark, scenario: str) -> None:  # noqa: ANN001 (pytest-benchmark fixture)
    from ftengine.bench.cache import run_cache_bench

    result = benchmark.pedantic(run_cache_bench, args=(_small_args(scenario),), rounds=1, iterations=1)
    benchmark.extra_info.update(scenario=result["scenarios"][scenario], targets=result["targets"])
    assert result["scenarios"][scenario]["train_examples"] > 0


if __name__ == "__main__":
    from ftengine.cli import main

    raise SystemExit(main(["bench", "cache", *sys.argv[1:]]))
