"""The L2-SP anchor operand of ftengine::adamw_step / sgd_step: native against the reference, rows without an
anchor unchanged, argument checks, opcheck. (Lockstep against plain PyTorch: tests/runtime/test_optimizer_flat.py.)"""

from __future__ import annotations

import pytest
import torch

from ftengine.kernels import ops, reference

from kernel_utils import DEVICES, clone, flat_step, requires_native
from test_flat_optim_ops import DTYPES, KINDS, assert_cases_close, make_case

# per row (SIZES of test_flat_optim_ops): alpha; row 2 is empty, row 3 frozen, row 4 has no anchor (alpha 0)
ALPHAS = [0.5, 0.3, 0.2, 0.1, 0.0]


def with_anchor(case: dict, adt: torch.dtype, seed: int = 1) -> dict:
    """The case with an anchor near its weights (so the drift is small and signed) and the l2sp column."""
    gen = torch.Generator().manual_seed(seed)
    weights = case["master"] if case["master"] is not None else case["param"]
    noise = torch.randn(weights.numel(), generator=gen).to(weights.device)
    anchor = (weights.float() + 0.05 * noise).to(adt)
    lo, n = case["segments"][4, :2].tolist()
    anchor[lo:lo + n] = float("nan")  # a row with alpha 0 must never read its anchor slice
    alphas = torch.tensor(ALPHAS, dtype=torch.float64, device=case["hyper"].device).unsqueeze(1)
    return {**case, "anchor": anchor, "hyper": torch.cat([case["hyper"], alphas], dim=1)}


def run(case: dict, kind: str, mod: object, steps: int = 3) -> dict:
    for _ in range(steps):
        flat_step(case, kind, mod)
    return case


@pytest.mark.native
@requires_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,momentum", KINDS, ids=["adamw", "sgd-momentum", "sgd-plain"])
@pytest.mark.parametrize("pdt,sdt", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("adt", [torch.float32, torch.bfloat16], ids=["anchor-fp32", "anchor-bf16"])
def test_native_matches_reference(device: str, kind: str, momentum: bool, pdt: torch.dtype, sdt: torch.dtype,
                                  adt: torch.dtype) -> None:
    case = with_anchor(make_case(device, kind, pdt, sdt, momentum), adt)
    expected = run(clone(case), kind, reference)
    actual = run(clone(case), kind, ops)
    assert torch.equal(actual.pop("anchor").nan_to_num(), expected.pop("anchor").nan_to_num())  # read only
    assert_cases_close(actual, expected, floor=sdt)
    assert torch.isfinite(actual["param"].float()).all()  # the NaN anchor of the alpha-0 row was not read


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mod", [ops, reference], ids=["op", "reference"])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_rows_without_alpha_match_no_anchor(device: str, mod: object, kind: str) -> None:
    """Alpha 0 everywhere: bit-identical to the call without an anchor (the plain path, anchor unread)."""
    plain = make_case(device, kind, torch.float32, torch.float32)
    anchored = with_anchor(plain, torch.float32)
    anchored["hyper"][:, -1] = 0.0
    anchored["anchor"].fill_(float("nan"))
    expected, actual = run(clone(plain), kind, mod), run(clone(anchored), kind, mod)
    for key in ("param", "steps", *(("exp_avg", "exp_avg_sq") if kind == "adamw" else ("momentum_buffer",))):
        assert torch.equal(actual[key], expected[key]), key


@pytest.mark.parametrize("mod", [ops, reference], ids=["op", "reference"])
def test_anchor_pulls_toward_the_start(mod: object) -> None:
    """Zero grads, no weight decay, lr * alpha = 0.5: AdamW moves each anchored weight half-way to its anchor."""
    case = with_anchor(make_case("cpu", "adamw", torch.float32, torch.float32), torch.float32)
    case["grad"].zero_()
    case["exp_avg"].zero_()
    case["hyper"][:, 0], case["hyper"][:, 1], case["hyper"][:, -1] = 0.5, 0.0, 1.0
    before = case["param"].clone()
    flat_step(case, "adamw", mod, clip=0.0, skip=False)
    lo, n = case["segments"][1, :2].tolist()
    halfway = (before[lo:lo + n] + case["anchor"][lo:lo + n]) / 2
    torch.testing.assert_close(case["param"][lo:lo + n], halfway)


@pytest.mark.parametrize("mod", [ops, reference], ids=["op", "reference"])
def test_anchor_errors_name_the_op_and_the_fix(mod: object) -> None:
    case = make_case("cpu", "adamw", torch.float32, torch.float32)
    with pytest.raises(RuntimeError, match=r"ftengine::adamw_step: hyper must have 6 columns \(with an anchor"):
        run({**case, "anchor": case["param"].clone()}, "adamw", mod, steps=1)
    bad = with_anchor(case, torch.float32)
    with pytest.raises(RuntimeError, match="ftengine::adamw_step: anchor must be float32 or bfloat16"):
        run({**bad, "anchor": bad["anchor"].half()}, "adamw", mod, steps=1)
    with pytest.raises(RuntimeError, match="ftengine::adamw_step: anchor has 3 elements but param has"):
        run({**bad, "anchor": bad["anchor"][:3].clone()}, "adamw", mod, steps=1)


@pytest.mark.parametrize("kind,pdt,adt", [("adamw", torch.float32, torch.float32),
                                          ("adamw", torch.bfloat16, torch.bfloat16),
                                          ("sgd", torch.float32, torch.bfloat16)])
def test_opcheck_with_anchor(kind: str, pdt: torch.dtype, adt: torch.dtype) -> None:
    case = with_anchor(make_case("cpu", kind, pdt, torch.float32), adt)
    case["anchor"].nan_to_num_(0.0)  # opcheck compares results across runs; keep every value finite
    sq = reference.flat_grad_sqnorm(case["grad"], case["segments"])
    if kind == "adamw":
        args = (case["param"], case["exp_avg"], case["exp_avg_sq"], case["master"], case["grad"], case["segments"],
                case["hyper"], case["steps"], sq, 1.0, True, case["anchor"])
        torch.library.opcheck(torch.ops.ftengine.adamw_step.default, args)
    else:
        args = (case["param"], case["momentum_buffer"], case["master"], case["grad"], case["segments"],
                case["hyper"], case["steps"], sq, 1.0, True, case["anchor"])
        torch.library.opcheck(torch.ops.ftengine.sgd_step.default, args)
