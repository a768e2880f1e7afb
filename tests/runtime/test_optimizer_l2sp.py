"""FlatOptimizer's L2-SP (decay toward the starting weights) in lockstep with a plain-PyTorch L2-SP: torch.optim
AdamW / SGD plus the anchor term written out (Li et al. 2018), params and optimizer state, 8 steps."""

from __future__ import annotations

import pytest
import torch

from ftengine import kernels
from ftengine.kernels.testing import assert_close
from ftengine.runtime.optimizer import FlatOptimizer

NO_NATIVE = f"native extension unavailable: {kernels.backend_info()['reason']}"
BACKENDS = [pytest.param("reference", id="reference"),
            pytest.param("auto", id="native", marks=[pytest.mark.native,
                                                     pytest.mark.skipif(not kernels.native_available(), reason=NO_NATIVE)])]
# (name, shapes, weight decay, l2sp alpha): odd sizes, an empty group, a group with both decays, a head without
# an anchor (alpha 0: plain weight decay toward zero), a group frozen throughout
GROUPS = [("embeddings", [(13, 7), (7,)], 0.0, 0.3), ("empty", [], 0.0, 0.5), ("layer.0", [(4097,), (1,)], 0.0, 0.5),
          ("layer.1", [(33, 3), (3,)], 0.1, 0.2), ("frozen", [(9,)], 0.0, 0.4), ("head", [(5, 3), (5,)], 0.1, 0.0)]
UNFREEZE_AT = 3  # layer.0 trains from this step on: its anchor is taken then (its weights are still the start)
LR = 5e-2


def trainable(step: int) -> list[bool]:
    return [True, True, step >= UNFREEZE_AT, True, False, True]


class PlainL2SP:
    """torch.optim over copies of the parameters, every group registered up front (a group not trainable this step
    gets grad None, which torch skips), and L2-SP written out: AdamW ``p -= lr * alpha * (p - p0)`` with the drift
    taken before the step (decoupled, like AdamW's decay); SGD ``grad += alpha * (p - p0)`` (coupled)."""

    def __init__(self, params: list[list[torch.nn.Parameter]], kind: str, anchor_dtype: torch.dtype) -> None:
        self.kind = kind
        self.params = [[torch.nn.Parameter(p.detach().clone()) for p in ps] for ps in params]
        # the starting weights as the optimizer stores them (a bf16 anchor is the rounded start)
        self.anchors = [[p.detach().to(anchor_dtype).float().clone() for p in ps] for ps in self.params]
        groups = [dict(params=ps, lr=LR, weight_decay=wd) for ps, (_, _, wd, _) in zip(self.params, GROUPS) if ps]
        self.opt = (torch.optim.AdamW(groups, foreach=False, betas=(0.9, 0.99)) if kind == "adamw" else
                    torch.optim.SGD(groups, foreach=False, momentum=0.9))

    def step(self, grads: list[list[torch.Tensor]], live: list[bool], clip: float) -> None:
        for ps, gs, on in zip(self.params, grads, live):
            for p, g in zip(ps, gs):
                p.grad = g.clone() if on else None
        torch.nn.utils.clip_grad_norm_([p for ps, on in zip(self.params, live) if on for p in ps], clip, foreach=False)
        anchored = [(p, a, alpha) for ps, anchors, on, (*_, alpha) in zip(self.params, self.anchors, live, GROUPS)
                    if on and alpha for p, a in zip(ps, anchors)]
        with torch.no_grad():
            if self.kind == "sgd":
                for p, a, alpha in anchored:
                    p.grad.add_(p - a, alpha=alpha)
                self.opt.step()
                return
            drifts = [(p, p - a, alpha) for p, a, alpha in anchored]
            self.opt.step()
            for p, drift, alpha in drifts:
                p.add_(drift, alpha=-(LR * alpha))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
@pytest.mark.parametrize("anchor_dtype", ["fp32", "bf16"])
def test_l2sp_lockstep_with_plain_pytorch(backend: str, kind: str, anchor_dtype: str) -> None:
    gen = torch.Generator().manual_seed(0)
    params = [[torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes] for _, shapes, _, _ in GROUPS]
    twin = PlainL2SP(params, kind, {"fp32": torch.float32, "bf16": torch.bfloat16}[anchor_dtype])
    groups = [dict(params=ps, name=name, lr=LR, weight_decay=wd, l2sp=alpha, trainable=on)
              for ps, (name, _, wd, alpha), on in zip(params, GROUPS, trainable(0))]
    opt = FlatOptimizer(groups, kind=kind, betas=(0.9, 0.99), momentum=0.9, max_grad_norm=2.0, backend=backend,
                        anchor_dtype=anchor_dtype)
    for step in range(8):
        live = trainable(step)
        for g, on in zip(opt.param_groups, live):
            g["trainable"] = on
        gen = torch.Generator().manual_seed(100 + step)
        grads = [[torch.randn(p.shape, generator=gen) for p in ps] for ps in params]
        for ps, gs in zip(params, grads):
            for p, g in zip(ps, gs):
                p.grad.copy_(g)
        assert opt.step()["skipped"] is False
        twin.step(grads, live, 2.0)
        state, pid = opt.state_dict()["state"], 0
        for i, (ps, twin_ps) in enumerate(zip(params, twin.params)):
            for j, (p, ref) in enumerate(zip(ps, twin_ps)):
                assert_close(p.detach(), ref.detach(), f"step {step} group {GROUPS[i][0]} param {j}")
                for key, value in twin.opt.state.get(ref, {}).items():
                    assert_close(state[pid][key].float(), value.float(), f"step {step} {GROUPS[i][0]} {key}")
                if pid in state:  # the anchor is the starting weights, whenever the group began to train
                    assert_close(state[pid]["anchor"].float(), twin.anchors[i][j], f"{GROUPS[i][0]} anchor")
                pid += 1
    frozen = params[4][0]
    assert torch.equal(frozen.detach(), twin.params[4][0].detach())  # frozen throughout: never touched


@pytest.mark.parametrize("backend", BACKENDS)
def test_l2sp_state_dict_round_trip_keeps_the_anchor(backend: str) -> None:
    """A resumed optimizer decays toward the original start, not toward the weights it resumed from."""
    def build(params: list[torch.nn.Parameter]) -> FlatOptimizer:
        return FlatOptimizer([dict(params=params, name="g", lr=0.1, weight_decay=0.0, l2sp=1.0)],
                             backend=backend, anchor_dtype="fp32")

    start = torch.randn(64, generator=torch.Generator().manual_seed(3))
    p = torch.nn.Parameter(start.clone())
    opt = build([p])
    for _ in range(3):
        p.grad.fill_(1.0)
        opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    resumed = build([q])
    resumed.load_state_dict(opt.state_dict())
    assert torch.equal(resumed.state_dict()["state"][0]["anchor"], start)
    p.grad.fill_(1.0)
    q.grad.fill_(1.0)
    opt.step()
    resumed.step()
    assert torch.equal(p.detach(), q.detach())


def test_l2sp_without_anchor_dtype_is_refused() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="l2sp must be >= 0, and > 0 only with anchor_dtype set"):
        FlatOptimizer([dict(params=[p], name="g", lr=0.1, weight_decay=0.0, l2sp=0.1)])
