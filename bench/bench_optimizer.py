"""pytest-benchmark view of the optimizer workbench (not part of the test suite: run it explicitly).

    python -m pytest bench/bench_optimizer.py --benchmark-columns=median,min,rounds
    python -m pytest bench/bench_optimizer.py -k "bert-base and g14" --benchmark-json=bench/results/pb.json

Same cases and implementations as bench/optimizer.py (ftengine.bench.optimizer); every implementation is
validated against the PyTorch reference on a small replica first. BERT-base cases need ~3 GB of memory each.
"""

from __future__ import annotations

import itertools

import pytest

from ftengine.bench.optimizer import IMPLS, Case, build, impl_bytes, validate
from ftengine.kernels import backend_info

CASES = [Case(m, g, p, f) for m, g, p, f in itertools.product(("bert-base", "resnet50"), (1, 14, 26, 100),
                                                                ("fp32", "bf16"), (0.0, 0.5)) if not (g == 1 and f)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_optimizer_step(benchmark, case: Case, impl: str) -> None:  # noqa: ANN001 (pytest-benchmark fixture)
    backend = backend_info()
    if impl.startswith("ftengine") and not backend["native_available"]:
        pytest.skip(f"native extension unavailable: {backend['reason']}")
    benchmark.extra_info["validation"] = validate(case, impl, "cpu")
    setup = build(case, impl, "cpu")
    benchmark.extra_info.update(bytes_per_param=impl_bytes(case, impl), trainable_params=setup.trainable_params)
    benchmark.pedantic(setup.step, rounds=5, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info["gbps"] = impl_bytes(case, impl) * setup.trainable_params / median / 1e9
