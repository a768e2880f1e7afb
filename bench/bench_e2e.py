"""pytest-benchmark view of the end-to-end bench (not part of the test suite: run it explicitly).

    python -m pytest bench/bench_e2e.py --benchmark-columns=median,min,max,rounds
    E2E_TRAIN=800 E2E_VALIDATION=400 python -m pytest bench/bench_e2e.py -k gradual --benchmark-json=out.json

One fresh process per run (ftengine.bench.e2e worker), timed from process start to exit; the
per-epoch records, final accuracy and peak RSS go to extra_info. The default size (128 train / 64 validation)
keeps a full pass to a few minutes on two CPU cores; bench/e2e.py is the real measurement.
"""

from __future__ import annotations

import argparse
import os

import pytest

from ftengine.bench.e2e import spawn_run
from ftengine.bench.e2e_recipes import RECIPES
from ftengine.bench.options import E2E_IMPLS

ARGS = argparse.Namespace(train=int(os.environ.get("E2E_TRAIN", "128")), validation=int(os.environ.get("E2E_VALIDATION", "64")),
                          threads=int(os.environ.get("E2E_THREADS", "2")))


@pytest.mark.parametrize("impl", E2E_IMPLS)
@pytest.mark.parametrize("recipe", ["feature_extraction", "gradual_unfreeze"])
def test_e2e(benchmark, recipe: str, impl: str) -> None:
    run = benchmark.pedantic(spawn_run, args=(impl, recipe, ARGS), rounds=1, iterations=1)
    benchmark.extra_info.update(final_accuracy=run["epochs"][-1]["val_accuracy"], peak_rss_mb=run["peak_rss_mb"],
                                epochs=run["epochs"])
    assert len(run["epochs"]) == RECIPES[recipe].epochs  # every epoch of the recipe ran and was validated
