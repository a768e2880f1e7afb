"""ftengine::flat_grad_sqnorm / adamw_step / sgd_step: native kernels against the reference, edge layouts, opcheck."""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import ops, reference
from ftengine.kernels.flat import FlatLayout
from ftengine.kernels.testing import assert_close

from kernel_utils import DEVICES, clone, flat_step, requires_native

# group sizes: a single element, an odd size past a vector boundary, an empty group, a frozen group, a small one
SIZES = [[1], [4097], [], [300, 7], [33, 5]]
TRAINABLE = [1, 1, 1, 0, 1]
HYPER = {"adamw": lambda i: [1e-2 * (i + 1), 0.1, 0.9, 0.999, 1e-8],
         "sgd": lambda i: [1e-2 * (i + 1), 0.01, 0.9, float(i % 2)]}


def make_case(device: str, kind: str, pdt: torch.dtype, sdt: torch.dtype, momentum: bool = True,
              trainable: list[int] = TRAINABLE, seed: int = 0) -> dict:
    """Flat buffers and tables for SIZES; moments start non-zero so every term of the update matters."""
    gen = torch.Generator().manual_seed(seed)
    layout = FlatLayout.build(SIZES)
    n = layout.numel
    weights = torch.randn(n, generator=gen)
    case = dict(
        param=weights.to(pdt), master=weights.clone() if pdt != torch.float32 else None,
        grad=torch.randn(n, generator=gen).to(pdt),
        segments=torch.tensor([[o, length, t] for (o, length), t in zip(layout.segments, trainable)]),
        hyper=torch.tensor([HYPER[kind](i) for i in range(len(SIZES))], dtype=torch.float64),
        steps=torch.tensor([0, 3, 0, 2, 9]),
    )
    if kind == "adamw":
        case["exp_avg"] = (0.1 * torch.randn(n, generator=gen)).to(sdt)
        case["exp_avg_sq"] = (0.01 * torch.rand(n, generator=gen)).to(sdt)
    else:
        case["momentum_buffer"] = (0.1 * torch.randn(n, generator=gen)).to(sdt) if momentum else None
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in case.items()}


def run(case: dict, kind: str, impl: str, clip: float = 1.0, skip: bool = True, steps: int = 3) -> dict:
    mod = ops if impl == "op" else reference
    for _ in range(steps):
        flat_step(case, kind, mod, clip, skip)
    return case


def assert_cases_close(actual: dict, expected: dict, floor: torch.dtype = torch.float32) -> None:
    """Compare every buffer; ``floor``: bf16 moments round differently after an FMA-level difference, and the
    weights computed from them inherit that (one bf16 ulp of a moment), so they are compared at bf16 tolerance."""
    for key, value in expected.items():
        if not isinstance(value, torch.Tensor):
            continue
        got = actual[key]
        if floor == torch.bfloat16 and value.dtype == torch.float32:
            got, value = got.to(floor), value.to(floor)
        assert_close(got, value, key)


KINDS = [("adamw", True), ("sgd", True), ("sgd", False)]
DTYPES = [(torch.float32, torch.float32), (torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32),
          (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float32)]


@pytest.mark.native
@requires_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,momentum", KINDS, ids=["adamw", "sgd-momentum", "sgd-plain"])
@pytest.mark.parametrize("pdt,sdt", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("clip", [1.0, 0.0], ids=["clip", "noclip"])
def test_native_matches_reference(device: str, kind: str, momentum: bool, pdt: torch.dtype, sdt: torch.dtype,
                                  clip: float) -> None:
    case = make_case(device, kind, pdt, sdt, momentum)
    expected = run(clone(case), kind, "reference", clip)
    actual = run(clone(case), kind, "op", clip)
    assert_cases_close(actual, expected, floor=sdt)
    assert actual["steps"].tolist() == [3, 6, 3, 2, 12]  # trainable groups +3 (the empty one too), frozen kept


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["op", "reference"])
def test_frozen_groups_are_never_written(device: str, impl: str) -> None:
    case = make_case(device, "adamw", torch.bfloat16, torch.float32)
    lo, n = case["segments"][3, :2].tolist()
    case["grad"][lo:lo + n] = float("nan")  # a frozen group's grad is neither read for the norm nor applied
    before = clone(case)
    out = run(case, "adamw", impl)
    for key in ("param", "master", "exp_avg", "exp_avg_sq"):
        assert torch.equal(out[key][lo:lo + n], before[key][lo:lo + n]), key
        assert not torch.equal(out[key][:lo], before[key][:lo]), key  # the trainable groups did move
    # each row counts its own steps (torch's per-parameter state["step"]); a row not trainable keeps its count
    assert out["steps"].tolist() == [3, 6, 3, 2, 12]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["op", "reference"])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_all_frozen_and_empty(device: str, impl: str, kind: str) -> None:
    case = make_case(device, kind, torch.float32, torch.float32, trainable=[0, 0, 0, 0, 0])
    before = clone(case)
    assert float((ops if impl == "op" else reference).flat_grad_sqnorm(case["grad"], case["segments"])) == 0.0
    assert_cases_close(run(case, kind, impl), before)
    empty = torch.empty(0, device=device)
    tables = dict(segments=torch.empty(0, 3, dtype=torch.int64, device=device),
                  hyper=torch.empty(0, 5 if kind == "adamw" else 4, dtype=torch.float64, device=device),
                  steps=torch.empty(0, dtype=torch.int64, device=device))
    mod = ops if impl == "op" else reference
    assert float(mod.flat_grad_sqnorm(empty, tables["segments"])) == 0.0
    if kind == "adamw":
        mod.adamw_step(empty, empty.clone(), empty.clone(), None, empty, **tables, grad_sqnorm=None,
                       max_grad_norm=0.0, skip_nonfinite=False)
    else:
        mod.sgd_step(empty, None, None, empty, **tables, grad_sqnorm=None, max_grad_norm=0.0, skip_nonfinite=False)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["op", "reference"])
def test_nonfinite_norm_skips_the_whole_step(device: str, impl: str) -> None:
    case = make_case(device, "adamw", torch.float32, torch.float32)
    case["grad"][5] = float("inf")  # inside trainable group 1
    before = clone(case)
    out = run(case, "adamw", impl, steps=1)
    assert_cases_close(out, before)  # nothing written, step counts unchanged
    out = run(clone(before), "adamw", impl, skip=False, clip=0.0, steps=1)
    assert out["steps"].tolist() != before["steps"].tolist()  # without skipping the step is taken


@pytest.mark.parametrize("device", DEVICES)
def test_sqnorm_counts_trainable_groups_only(device: str) -> None:
    case = make_case(device, "adamw", torch.float32, torch.float32)
    expected = sum(float(case["grad"][o:o + n].double().square().sum())
                   for o, n, t in case["segments"].tolist() if t)
    assert float(ops.flat_grad_sqnorm(case["grad"], case["segments"])) == pytest.approx(expected, rel=1e-6)


def test_user_errors_name_the_op_and_the_fix() -> None:
    case = make_case("cpu", "adamw", torch.float32, torch.float32)
    with pytest.raises(RuntimeError, match="need grad_sqnorm"):
        ops.adamw_step(case["param"], case["exp_avg"], case["exp_avg_sq"], None, case["grad"], case["segments"],
                       case["hyper"], case["steps"], None, 1.0, False)
    bad = case["grad"].double()
    with pytest.raises(RuntimeError, match="ftengine::adamw_step: grad dtype Double differs from param dtype Float"):
        ops.adamw_step(case["param"], case["exp_avg"], case["exp_avg_sq"], None, bad, case["segments"],
                       case["hyper"], case["steps"], None, 0.0, False)


def _opcheck_args(kind: str, pdt: torch.dtype) -> tuple:
    case = make_case("cpu", kind, pdt, torch.float32)
    sq = reference.flat_grad_sqnorm(case["grad"], case["segments"])
    if kind == "adamw":
        return (case["param"], case["exp_avg"], case["exp_avg_sq"], case["master"], case["grad"], case["segments"],
                case["hyper"], case["steps"], sq, 1.0, True)
    return (case["param"], case["momentum_buffer"], case["master"], case["grad"], case["segments"], case["hyper"],
            case["steps"], sq, 1.0, True)


@pytest.mark.parametrize("kind,pdt", [("adamw", torch.float32), ("adamw", torch.bfloat16), ("sgd", torch.float32)])
def test_opcheck_step_ops(kind: str, pdt: torch.dtype) -> None:
    op = torch.ops.ftengine.adamw_step if kind == "adamw" else torch.ops.ftengine.sgd_step
    torch.library.opcheck(op.default, _opcheck_args(kind, pdt))


def test_opcheck_sqnorm() -> None:
    case = make_case("cpu", "adamw", torch.bfloat16, torch.float32)
    torch.library.opcheck(torch.ops.ftengine.flat_grad_sqnorm.default, (case["grad"], case["segments"]))
