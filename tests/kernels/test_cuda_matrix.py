"""The CUDA kernels against the PyTorch reference over the whole matrix a GPU run must pass.

Flat optimizer ops: every parameter x moment dtype pair (fp32 / bf16 / fp16 params, 16-bit ones through fp32
masters; fp32 or bf16 moments), AdamW and SGD with and without momentum, clipping on and off, layouts with odd
sizes packed back to back, buffers that start off a 32-byte boundary (the kernels' scalar path), sizes spanning many
blocks, 100 groups, empty and frozen groups; non-finite skipping; one captured CUDA graph replayed over a schedule
with changing gradients (a non-finite one among them); FlatOptimizer's native step in lockstep with its reference
backend. gather_ragged: large ragged batches, every storage/output dtype, a cut max_len, strided rows.
Expected values come from ``ftengine.kernels.reference`` run on the same device; tolerances from
``ftengine.kernels.testing``.
"""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import _native, ops, reference
from ftengine.kernels.testing import assert_close, tol

from kernel_utils import clone, flat_step
from test_gather_ragged import ragged

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
    pytest.mark.skipif(not _native.build_info().get("cuda_compiled"), reason="extension built without CUDA kernels"),
]

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
DTYPES = [(p, s) for p in (F32, BF16, F16) for s in (F32, BF16)]  # (param, moments)
LAYOUTS = {  # name -> (group sizes, trainable flags, element offset of the buffers' start)
    "odd-packed": ([1, 4097, 0, 33, 300, 7], [1, 1, 1, 0, 1, 1], 0),
    "unaligned": ([5, 4099, 0, 1031], [1, 1, 1, 1], 1),  # data_ptr off a 32-byte boundary: no vector loads
    "large": ([(1 << 20) + 3, 0, 65537, 1, 300001], [1, 1, 0, 1, 1], 0),
    "100-groups": ([int(n) for n in torch.randint(0, 3000, (100,), generator=torch.Generator().manual_seed(3))],
                   [int(i % 7 != 3) for i in range(100)], 0),
}
KINDS = {"adamw": True, "sgd-momentum": True, "sgd-plain": False}


def _hyper(kind: str, groups: int) -> torch.Tensor:
    rows = [[1e-2 / (1 + i % 5), 0.1 * (i % 2), 0.9, 0.999, 1e-8] if kind == "adamw"
            else [1e-2 / (1 + i % 5), 0.01 * (i % 3), 0.9, float(i % 2)] for i in range(groups)]
    return torch.tensor(rows, dtype=torch.float64)


def make(layout: str, kind: str, pdt: torch.dtype, sdt: torch.dtype, seed: int = 0) -> dict:
    """Flat buffers on CUDA for a layout; moments start non-zero so every term of the update matters."""
    sizes, trainable, shift = LAYOUTS[layout]
    n = sum(sizes)
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def buf(scale: float, dtype: torch.dtype, positive: bool = False) -> torch.Tensor:
        x = torch.rand(n + shift, generator=gen, device="cuda") if positive else \
            torch.randn(n + shift, generator=gen, device="cuda")
        return (scale * x).to(dtype)[shift:]

    offsets = torch.tensor([0, *sizes]).cumsum(0)[:-1].tolist()
    weights = buf(1.0, F32)
    case = dict(param=weights.to(pdt), master=weights.clone() if pdt != F32 else None, grad=buf(1.0, pdt),
                segments=torch.tensor([[o, s, t] for o, s, t in zip(offsets, sizes, trainable)], device="cuda"),
                hyper=_hyper(kind, len(sizes)).cuda(), steps=torch.arange(len(sizes), device="cuda") % 4)
    if kind == "adamw":
        case.update(exp_avg=buf(0.1, sdt), exp_avg_sq=buf(0.01, sdt, positive=True))
    else:
        case["momentum_buffer"] = buf(0.1, sdt) if KINDS[kind] else None
    return case


STATES = ("exp_avg", "exp_avg_sq", "momentum_buffer")


def assert_same(actual: dict, expected: dict, sdt: torch.dtype) -> None:
    """Every buffer within its dtype's tolerance; with bf16 moments fp32 values are compared at bf16 tolerance
    (a moment rounded one bf16 ulp apart after an FMA-level difference carries into the weights).

    bf16 moments themselves get an absolute slack of one bf16 ulp at the buffer's largest magnitude: an operand
    rounded one ulp apart in an earlier step stays one ulp apart in absolute terms when the update nearly
    cancels it, which makes a small result look far off relatively. A wrong update moves far more than that.
    """
    for key, want in expected.items():
        if not isinstance(want, torch.Tensor):
            continue
        got = actual[key]
        if sdt == BF16 and want.dtype == F32:
            got, want = got.to(BF16), want.to(BF16)
        if key in STATES and want.dtype == BF16 and want.numel():
            slack = float(want.float().abs().max()) * 2.0**-8
            torch.testing.assert_close(got.float(), want.float(), rtol=tol(BF16)["rtol"], atol=slack,
                                       msg=lambda m, key=key: f"{key}: {m}")
        else:
            assert_close(got, want, key)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pdt,sdt", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("clip", [1.0, 0.0], ids=["clip", "noclip"])
def test_cuda_matches_reference(layout: str, kind: str, pdt: torch.dtype, sdt: torch.dtype, clip: float) -> None:
    case = make(layout, kind, pdt, sdt)
    expected, actual = clone(case), clone(case)
    for _ in range(3):
        flat_step(expected, kind, reference, clip)
        flat_step(actual, kind, ops, clip)
    assert_same(actual, expected, sdt)
    trainable = case["segments"][:, 2].bool()
    assert torch.equal(actual["steps"], case["steps"] + 3 * trainable)  # frozen groups keep their count
    frozen = [(o, s) for o, s, t in case["segments"].tolist() if not t]
    for o, s in frozen:  # never written, bit for bit
        assert torch.equal(actual["param"][o:o + s], case["param"][o:o + s])


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pdt", [F32, BF16, F16], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_nonfinite_grad_skips_the_step_and_frozen_ones_do_not(kind: str, pdt: torch.dtype, bad: float) -> None:
    case = make("odd-packed", kind, pdt, F32)
    case["grad"][4000] = bad  # inside trainable group 1 (offset 1, 4097 long)
    out = clone(case)
    flat_step(out, kind, ops, clip=1.0, skip=True)
    del case["grad"]  # NaN != NaN; the grad is an input, never written
    assert_same(out, case, F32)  # nothing written, step counts kept
    assert torch.equal(out["param"], case["param"])
    frozen = make("odd-packed", kind, pdt, F32)
    o, s, _ = frozen["segments"][3].tolist()  # group 3 is frozen: its grad is neither read nor applied
    frozen["grad"][o:o + s] = bad
    expected, actual = clone(frozen), clone(frozen)
    flat_step(expected, kind, reference)
    flat_step(actual, kind, ops)
    del expected["grad"]
    assert_same(actual, expected, F32)
    assert not torch.equal(actual["param"], frozen["param"])


@pytest.mark.parametrize("kind,pdt,sdt", [("adamw", BF16, BF16), ("adamw", F16, F32), ("adamw", F32, F32),
                                          ("sgd-momentum", BF16, F32)], ids=str)
def test_one_captured_graph_replays_a_schedule(kind: str, pdt: torch.dtype, sdt: torch.dtype) -> None:
    """Capture sqnorm + step once; each replay takes new grads and LRs from the same device buffers, as a
    captured training step does. Replay 3 has a non-finite grad and must change nothing."""
    static = make("odd-packed", kind, pdt, sdt)
    expected = clone(static)
    warm = clone(static)
    flat_step(warm, kind, ops)  # allocator and kernels warmed up outside the capture
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        flat_step(static, kind, ops)
    torch.cuda.current_stream().wait_stream(stream)
    gen = torch.Generator(device="cuda").manual_seed(7)
    for replay, lr in enumerate([1e-3, 5e-3, 0.0, 2e-3, 1e-2, 3e-4]):
        grad = torch.randn(static["grad"].shape, generator=gen, device="cuda").to(pdt)
        if replay == 3:
            grad[10] = float("inf")
        for case in (static, expected):
            case["grad"].copy_(grad)
            case["hyper"][:, 0] = lr
        graph.replay()
        flat_step(expected, kind, reference)
    torch.cuda.synchronize()
    assert_same(static, expected, sdt)


@pytest.mark.parametrize("pdt", [F32, BF16], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("state", ["fp32", "bf16"])
def test_flat_optimizer_native_and_reference_backends_in_lockstep(pdt: torch.dtype, state: str) -> None:
    from ftengine.runtime.optimizer import FlatOptimizer

    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = [[(4097,), (1,), (33, 7)], [(300, 5)], [(0,)], [(5,)]]
    weights = [[torch.randn(s, generator=gen, device="cuda") for s in g] for g in shapes]
    params = {b: [[torch.nn.Parameter(w.clone().to(pdt)) for w in g] for g in weights] for b in ("auto", "reference")}
    opts = {b: FlatOptimizer([dict(params=ps, name=f"g{i}", lr=1e-2 * (i + 1), weight_decay=0.1, trainable=i != 1)
                              for i, ps in enumerate(params[b])], max_grad_norm=1.0, state_dtype=state, backend=b)
            for b in params}
    for t in range(7):
        if t == 3:  # group 1 is unfrozen mid-run: its bias correction starts at 1
            for opt in opts.values():
                opt.param_groups[1]["trainable"] = True
        grads = [torch.randn(p.shape, generator=gen, device="cuda").to(pdt) for g in params["auto"] for p in g]
        for b, ps in params.items():
            for p, g in zip((p for grp in ps for p in grp), grads, strict=True):
                p.grad = g.clone()
        infos = {b: opt.step() for b, opt in opts.items()}
        assert infos["auto"]["grad_norm"] == pytest.approx(infos["reference"]["grad_norm"], rel=1e-4)
    floor = BF16 if state == "bf16" else pdt
    for a, b in zip((p for g in params["auto"] for p in g), (p for g in params["reference"] for p in g), strict=True):
        assert_close(a.detach().to(floor), b.detach().to(floor), "param")


@pytest.mark.parametrize("width", [384, 7, 1031])
@pytest.mark.parametrize("src", [F32, BF16, F16], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("cut", [False, True], ids=["full", "cut"])
def test_gather_ragged_large_batches_match_reference(width: int, src: torch.dtype, cut: bool) -> None:
    gen = torch.Generator().manual_seed(width)
    lengths = torch.randint(0, 130, (600,), generator=gen).tolist()
    data, offsets, lens = ragged(lengths, width, src)
    index = torch.randint(0, 600, (128,), generator=gen)
    max_len = 64 if cut else int(lens[index].max())
    for dst in (F32, BF16, F16):
        got = ops.gather_ragged(data.cuda(), offsets.cuda(), lens.cuda(), index.cuda(), max_len, dst)
        want = reference.gather_ragged(data, offsets, lens, index, max_len, dst)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


def test_gather_ragged_reads_strided_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    data, offsets, lens = ragged(torch.randint(0, 70, (300,), generator=gen).tolist(), 96, BF16)
    wide = torch.cat([data, torch.ones_like(data)], dim=1).cuda()[:, :96]  # rows 192 apart: a column slice
    index = torch.randint(0, 300, (128,), generator=gen)
    got = ops.gather_ragged(wide, offsets.cuda(), lens.cuda(), index.cuda(), 69, F32)
    want = reference.gather_ragged(data, offsets, lens, index, 69, F32)
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
