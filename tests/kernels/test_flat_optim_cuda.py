"""CUDA-only properties of the flat optimizer kernels: graph capture with lr/step in device memory, the optimizer."""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import _native, ops, reference
from ftengine.kernels.testing import assert_close

from test_flat_optim_ops import clone, make_case

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
    pytest.mark.skipif(not _native.build_info().get("cuda_compiled"), reason="extension built without CUDA kernels"),
]


def test_step_is_graph_capturable_and_reads_lr_from_device_memory() -> None:
    case = make_case("cuda", "adamw", torch.bfloat16, torch.float32)
    expected = clone(case)
    static = clone(case)
    lrs = [1e-3, 5e-4, 0.0, 2e-3]

    def step(c: dict, mod) -> None:  # noqa: ANN001 (ops or reference module)
        sq = mod.flat_grad_sqnorm(c["grad"], c["segments"])
        mod.adamw_step(c["param"], c["exp_avg"], c["exp_avg_sq"], c["master"], c["grad"], c["segments"], c["hyper"],
                       c["steps"], sq, 1.0, True)

    step(clone(case), ops)  # warm up (allocator, kernels) outside the capture
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        step(static, ops)
    torch.cuda.current_stream().wait_stream(stream)  # capture records, runs nothing: static still holds case
    for lr in lrs:  # a schedule: only the device-side table changes between replays
        static["hyper"][:, 0] = lr
        expected["hyper"][:, 0] = lr
        graph.replay()
        step(expected, reference)
    torch.cuda.synchronize()
    for key in ("param", "master", "exp_avg", "exp_avg_sq", "steps"):
        assert_close(static[key], expected[key], key)


def test_flat_optimizer_on_cuda_matches_cpu() -> None:
    from ftengine.runtime.optimizer import FlatOptimizer

    gen = torch.Generator().manual_seed(0)
    shapes = [[(4097,), (1,)], [(33, 7)], [(5,)]]
    cpu = [[torch.nn.Parameter(torch.randn(s, generator=gen)) for s in g] for g in shapes]
    gpu = [[torch.nn.Parameter(p.detach().cuda()) for p in g] for g in cpu]
    opts = [FlatOptimizer([dict(params=ps, name=f"g{i}", lr=1e-2, weight_decay=0.1, trainable=i != 1)
                           for i, ps in enumerate(params)], max_grad_norm=1.0) for params in (cpu, gpu)]
    for step in range(5):
        for a, b in zip((p for g in cpu for p in g), (p for g in gpu for p in g)):
            grad = torch.randn(a.shape, generator=torch.Generator().manual_seed(step))
            a.grad.copy_(grad)
            b.grad.copy_(grad)
        infos = [o.step() for o in opts]
        assert infos[0]["grad_norm"] == pytest.approx(infos[1]["grad_norm"], rel=1e-5)
    for a, b in zip((p for g in cpu for p in g), (p for g in gpu for p in g)):
        assert_close(b.detach().cpu(), a.detach(), "param")
