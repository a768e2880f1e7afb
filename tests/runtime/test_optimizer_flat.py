"""FlatOptimizer in lockstep with torch.optim.AdamW / SGD (frozen groups excluded there), masks, state_dict."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ftengine import kernels
from ftengine.kernels.testing import assert_close
from ftengine.runtime.optimizer import FlatOptimizer

NO_NATIVE = f"native extension unavailable: {kernels.backend_info()['reason']}"
BACKENDS = [pytest.param("reference", id="reference"),
            pytest.param("auto", id="native", marks=[pytest.mark.native,
                                                     pytest.mark.skipif(not kernels.native_available(), reason=NO_NATIVE)])]
# (name, parameter shapes): odd sizes, a single element, a vector past one SIMD/CUDA tile
GROUPS = [("embeddings", [(13, 7), (7,)]), ("layer.0", [(4097,), (1,)]), ("layer.1", [(33, 3), (3,)]),
          ("head", [(5, 3), (5,)])]


def make_params(seed: int = 0) -> list[list[torch.nn.Parameter]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes] for _, shapes in GROUPS]


def flat_groups(params: list[list[torch.nn.Parameter]], trainable: list[bool]) -> list[dict]:
    return [dict(params=ps, name=name, lr=1e-2 * (i + 1), weight_decay=0.1 if i % 2 else 0.0, trainable=t)
            for i, ((name, _), ps, t) in enumerate(zip(GROUPS, params, trainable))]


def set_trainable(opt: FlatOptimizer, name: str) -> None:
    """Unfreeze a group by name, as the runtime does at a stage change (the mask is read at the next step)."""
    next(g for g in opt.param_groups if g["name"] == name)["trainable"] = True


def grads_for(step: int, params: list[list[torch.nn.Parameter]], scale: float = 1.0) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1000 + step)
    return [[scale * torch.randn(p.shape, generator=gen) for p in ps] for ps in params]


def feed(params: list[list[torch.nn.Parameter]], grads: list[list[torch.Tensor]]) -> None:
    """Write ``grads`` into the parameters' (flat-buffer view) gradients, as a backward pass would."""
    for ps, gs in zip(params, grads):
        for p, g in zip(ps, gs):
            p.grad.copy_(g)


class TorchTwin:
    """torch.optim over copies of the same parameters; a group joins (add_param_group) when it is unfrozen."""

    def __init__(self, params: list[list[torch.nn.Parameter]], groups: list[dict], kind: str, **kw: float) -> None:
        self.params = [[torch.nn.Parameter(p.detach().clone()) for p in ps] for ps in params]
        self.kind, self.kw, self.groups = kind, kw, groups
        self.opt: torch.optim.Optimizer | None = None
        self.index: dict[int, int] = {}  # our group index -> torch group index

    def sync_groups(self) -> None:
        for i, g in enumerate(self.groups):
            if g["trainable"] and i not in self.index:
                tg = dict(params=self.params[i], lr=g["lr"], weight_decay=g["weight_decay"])
                if self.opt is None:
                    cls = torch.optim.AdamW if self.kind == "adamw" else torch.optim.SGD
                    self.opt = cls([tg], foreach=False, **self.kw)
                else:
                    self.opt.add_param_group(tg)
                self.index[i] = len(self.opt.param_groups) - 1
            if i in self.index:
                self.opt.param_groups[self.index[i]]["lr"] = g["lr"]

    def step(self, grads: list[list[torch.Tensor | None]], max_norm: float | None) -> None:
        self.sync_groups()
        live = [i for i, g in enumerate(self.groups) if g["trainable"]]
        for i, ps in enumerate(self.params):
            for p, g in zip(ps, grads[i]):
                # frozen group or no grad this step: not stepped (torch skips grad None)
                p.grad = g.clone() if i in live and g is not None else None
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for i in live for p in self.params[i]], max_norm, foreach=False)
        self.opt.step()


def compare(ours: FlatOptimizer, twin: TorchTwin, params: list[list[torch.nn.Parameter]]) -> None:
    state = ours.state_dict()["state"]
    pid = 0
    for i, ps in enumerate(params):
        for j, p in enumerate(ps):
            ref = twin.params[i][j]
            assert_close(p.detach().float(), ref.detach(), f"group {i} param {j}")
            ref_state = twin.opt.state.get(ref, {}) if twin.opt is not None else {}
            assert (pid in state) == bool(ref_state), f"group {i}: state presence differs"
            for key, value in ref_state.items():
                expected = value.float() if key == "step" else value
                assert_close(state[pid][key].float(), expected, f"group {i} param {j} {key}")
            pid += 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
def test_adamw_lockstep_with_torch_across_an_unfreeze(backend: str, clip: float | None) -> None:
    params = make_params()
    groups = flat_groups(params, [False, False, True, True])
    twin = TorchTwin(params, [dict(g) for g in groups], "adamw", betas=(0.9, 0.99), eps=1e-6)
    opt = FlatOptimizer(groups, betas=(0.9, 0.99), eps=1e-6, max_grad_norm=clip, backend=backend)
    for step in range(12):
        if step == 5:  # stage change: layer.0 unfreezes, gets its own bias correction from t=1
            set_trainable(opt, "layer.0")
            twin.groups[1]["trainable"] = True
        for g, tg in zip(opt.param_groups, twin.groups):  # a schedule moves lr every step
            g["lr"] = tg["lr"] = 1e-2 * (1 + g["weight_decay"]) * (0.9 ** step)
        grads = grads_for(step, params, scale=3.0)
        feed(params, grads)
        info = opt.step()
        twin.step(grads, clip)
        assert info["skipped"] is False and math.isfinite(info["grad_norm"])
        compare(opt, twin, params)
    assert opt.group_steps() == [0, 7, 12, 12]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_lockstep_with_torch(backend: str, nesterov: bool) -> None:
    params = make_params()
    groups = flat_groups(params, [False, True, True, True])
    twin = TorchTwin(params, [dict(g) for g in groups], "sgd", momentum=0.9, nesterov=nesterov)
    opt = FlatOptimizer(groups, kind="sgd", momentum=0.9, nesterov=nesterov, skip_nonfinite=False, backend=backend)
    for step in range(10):
        if step == 4:
            set_trainable(opt, "embeddings")
            twin.groups[0]["trainable"] = True
        grads = grads_for(step, params)
        feed(params, grads)
        assert math.isnan(opt.step()["grad_norm"])  # no clipping, no non-finite check: norm not computed
        twin.step(grads, None)
        compare(opt, twin, params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_params_keep_fp32_master_in_lockstep_with_fp32_torch(backend: str) -> None:
    params = make_params()
    low = [[torch.nn.Parameter(p.detach().bfloat16()) for p in ps] for ps in params]
    master0 = [[p.detach().bfloat16().float() for p in ps] for ps in params]
    twin = TorchTwin([[torch.nn.Parameter(m) for m in ms] for ms in master0], flat_groups(params, [True] * 4), "adamw")
    opt = FlatOptimizer(flat_groups(low, [True] * 4), backend=backend)
    for step in range(8):
        grads = [[g.bfloat16() for g in gs] for gs in grads_for(step, params)]
        for ps, gs in zip(low, grads):
            for p, g in zip(ps, gs):
                p.grad.copy_(g)
        opt.step()
        twin.step([[g.float() for g in gs] for gs in grads], None)
    state = opt.state_dict()["state"]
    pid = 0
    for i, ps in enumerate(low):
        for j, p in enumerate(ps):
            assert_close(state[pid]["master"], twin.params[i][j].detach(), f"master {i}.{j}")
            assert torch.equal(p.detach(), state[pid]["master"].bfloat16())  # the bf16 param is the rounded master
            pid += 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_grad_skips_and_reports(backend: str) -> None:
    params = make_params()
    opt = FlatOptimizer(flat_groups(params, [False, True, True, True]), max_grad_norm=1.0, backend=backend)
    before = [p.detach().clone() for ps in params for p in ps]
    params[0][0].grad.fill_(float("nan"))  # frozen group: ignored
    params[2][0].grad.fill_(1.0)
    assert opt.step()["skipped"] is False
    params[2][0].grad[0, 0] = float("inf")
    moved = [p.detach().clone() for ps in params for p in ps]
    info = opt.step()
    assert info["skipped"] is True and not math.isfinite(info["grad_norm"])
    assert all(torch.equal(p, q) for p, q in zip((p.detach() for ps in params for p in ps), moved))
    assert torch.equal(params[0][0].detach(), before[0]) and opt.group_steps() == [0, 1, 1, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_round_trip_across_a_stage_change(backend: str) -> None:
    params = make_params()
    opt = FlatOptimizer(flat_groups(params, [False, False, True, True]), max_grad_norm=1.0, backend=backend)

    def train(o: FlatOptimizer, ps: list[list[torch.nn.Parameter]], steps: range) -> None:
        for step in steps:
            for group, gs in zip(ps, grads_for(step, ps)):
                for p, g in zip(group, gs):
                    p.grad.copy_(g)
            o.step()

    train(opt, params, range(3))
    saved = copy.deepcopy(opt.state_dict())  # what a checkpoint holds (copies, not views)
    saved_params = [[p.detach().clone() for p in ps] for ps in params]
    assert set(saved["state"]) == {4, 5, 6, 7}  # frozen groups never stepped: no state, as in torch
    set_trainable(opt, "layer.0")  # the run continues into stage 2
    train(opt, params, range(3, 7))

    resumed = [[torch.nn.Parameter(p.clone()) for p in ps] for ps in saved_params]
    opt2 = FlatOptimizer(flat_groups(resumed, [True, True, True, True]), max_grad_norm=1.0, backend=backend)
    opt2.load_state_dict(saved)  # restores the saved masks (stage 1) and step counts
    assert [g["trainable"] for g in opt2.param_groups] == [False, False, True, True]
    set_trainable(opt2, "layer.0")
    train(opt2, resumed, range(3, 7))
    for ps, qs in zip(params, resumed):
        for p, q in zip(ps, qs):
            torch.testing.assert_close(q, p, rtol=0, atol=0)
    assert opt2.group_steps() == opt.group_steps() == [0, 4, 7, 7]


@pytest.mark.parametrize("backend", BACKENDS)
def test_moments_start_at_zero_when_a_group_first_trains_whatever_the_buffer_held(backend: str) -> None:
    """Moment buffers are not zeroed up front (frozen groups' pages stay untouched): poison them, then unfreeze."""
    params = make_params()
    groups = flat_groups(params, [False, False, True, True])
    twin = TorchTwin(params, [dict(g) for g in groups], "adamw")
    opt = FlatOptimizer(groups, backend=backend)
    for flat in opt.buckets[0].state.values():
        flat.fill_(float("nan"))  # what an uninitialised allocation may hold
    for step in range(8):
        if step == 3:
            set_trainable(opt, "layer.0")
            twin.groups[1]["trainable"] = True
        grads = grads_for(step, params)
        feed(params, grads)
        opt.step()
        twin.step(grads, None)
        compare(opt, twin, params)
    assert opt.buckets[0].state["exp_avg"][:opt.buckets[0].layout.segments[0][1]].isnan().all()  # never written


def test_saving_the_state_dict_writes_only_the_groups_that_stepped(tmp_path) -> None:
    """The moments are their slices on storages of exactly their bytes: torch.save of a view would write the whole flat
    buffer, and a copy would hold the state twice while it is written."""
    big = [[torch.nn.Parameter(torch.zeros(100_000))], [torch.nn.Parameter(torch.zeros(10))]]
    opt = FlatOptimizer([dict(params=big[0], name="body", lr=1e-3, trainable=False),
                         dict(params=big[1], name="head", lr=1e-3, trainable=True)])
    big[1][0].grad.fill_(1.0)
    opt.step()
    state = opt.state_dict()
    assert not any(t._is_view() for entry in state["state"].values() for t in entry.values())
    flat = opt.buckets[0].state["exp_avg"]
    moment = state["state"][1]["exp_avg"]  # the head's: shares the flat buffer's memory, no copy
    assert flat.data_ptr() <= moment.data_ptr() < flat.data_ptr() + flat.numel() * flat.element_size()
    assert torch.equal(moment, torch.full((10,), 0.1))  # (1 - beta1) * grad after one step
    torch.save(state, tmp_path / "opt.pt")
    assert (tmp_path / "opt.pt").stat().st_size < 20_000  # body moments alone would be 800 kB


def test_lambda_lr_drives_the_kernel_lr() -> None:
    params = make_params()
    opt = FlatOptimizer(flat_groups(params, [True] * 4), backend="auto")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.0 if s == 0 else 1.0)
    before = [p.detach().clone() for ps in params for p in ps]
    for ps in params:
        for p in ps:
            p.grad.fill_(1.0)
    opt.step()  # lr 0: AdamW moves nothing (decay factor 1 - 0 * wd = 1)
    assert all(torch.equal(p.detach(), q) for p, q in zip((p for ps in params for p in ps), before))
    sched.step()
    opt.step()
    assert not torch.equal(params[3][0].detach(), before[6])


def test_params_and_grads_are_views_and_survive_zero_grad() -> None:
    params = make_params()
    opt = FlatOptimizer(flat_groups(params, [True] * 4))
    bucket = opt.buckets[0]
    p = params[1][0]

    def in_flat(t: torch.Tensor) -> bool:
        return t.untyped_storage().data_ptr() == bucket.grad.untyped_storage().data_ptr()

    assert p.untyped_storage().data_ptr() == bucket.param.untyped_storage().data_ptr()
    (p * 2).sum().backward()
    assert torch.all(p.grad == 2) and in_flat(p.grad)
    opt.zero_grad(set_to_none=False)
    assert torch.all(p.grad == 0) and in_flat(p.grad)
    opt.zero_grad()  # torch's default: None, so that a parameter the next forward skips is not stepped
    assert p.grad is None
    (p * 3).sum().backward()  # autograd allocates a fresh grad; the hook folds it into the flat buffer at once
    assert torch.all(p.grad == 3) and in_flat(p.grad)
    (p * 1).sum().backward()  # and later passes accumulate straight into the view
    assert torch.all(p.grad == 4) and in_flat(p.grad)
    p.grad = torch.full_like(p, 5.0)  # a grad set from outside is folded in by step()
    opt.step()
    assert torch.all(p.grad == 5) and in_flat(p.grad)


def test_user_errors() -> None:
    params = make_params()
    with pytest.raises(ValueError, match=r"kind must be one of 'adamw', 'sgd' \(got 'lamb'\)"):
        FlatOptimizer(flat_groups(params, [True] * 4), kind="lamb")
    opt = FlatOptimizer(flat_groups(params, [True] * 4))
    with pytest.raises(ValueError, match="groups are fixed at construction"):
        opt.add_param_group(dict(params=[torch.nn.Parameter(torch.zeros(2))]))
    other = FlatOptimizer(flat_groups(make_params(), [True] * 4)[:3])
    with pytest.raises(ValueError, match="the state has 3 groups but this optimizer has 4"):
        opt.load_state_dict(other.state_dict())


def test_state_dict_loads_into_torch_adamw_and_continues_in_lockstep() -> None:
    params = make_params()
    groups = flat_groups(params, [True] * 4)
    opt = FlatOptimizer(groups, backend="auto")
    for step in range(3):
        for ps, gs in zip(params, grads_for(step, params)):
            for p, g in zip(ps, gs):
                p.grad.copy_(g)
        opt.step()
    twin = [[torch.nn.Parameter(p.detach().clone()) for p in ps] for ps in params]
    torch_opt = torch.optim.AdamW([dict(params=ps, lr=g["lr"], weight_decay=g["weight_decay"])
                                   for ps, g in zip(twin, groups)], foreach=False)
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for step in range(3, 6):
        for ours, theirs, gs in zip(params, twin, grads_for(step, params)):
            for p, q, g in zip(ours, theirs, gs):
                p.grad.copy_(g)
                q.grad = g.clone()
        opt.step()
        torch_opt.step()
    for ours, theirs in zip(params, twin):
        for p, q in zip(ours, theirs):
            assert_close(p.detach(), q.detach(), "param after resuming in torch.optim.AdamW")


def test_zero_grad_skips_clean_frozen_groups_and_zeroes_on_unfreeze() -> None:
    frozen, trainable = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(3))
    opt = FlatOptimizer([dict(params=[frozen], name="low", lr=0.1, weight_decay=0.0, trainable=False),
                         dict(params=[trainable], name="top", lr=0.1, weight_decay=0.0, trainable=True)])
    frozen.grad.fill_(2.0)  # stray gradient in a frozen group: zeroed the first time it is seen frozen
    trainable.grad.fill_(3.0)
    opt.zero_grad(set_to_none=False)
    assert frozen.grad.abs().sum() == 0 and trainable.grad.abs().sum() == 0
    frozen.grad.fill_(5.0)  # a clean frozen group is not touched again: no bytes move ...
    opt.zero_grad(set_to_none=False)
    assert torch.equal(frozen.grad, torch.full((5,), 5.0))
    set_trainable(opt, "low")  # ... until it is trainable, when it is zeroed before its first update
    opt.zero_grad(set_to_none=False)
    assert frozen.grad.abs().sum() == 0
    assert frozen.grad.data_ptr() == opt.buckets[0].grad.data_ptr()  # still a view into the flat buffer


def backward(params: list[list[torch.nn.Parameter]], grads: list[list[torch.Tensor]],
             unused: set[tuple[int, int]]) -> None:
    """A backward pass that leaves ``p.grad == g`` exactly, except for the (group, param) pairs in ``unused``
    (not in this step's forward) and parameters with requires_grad=False: their grads stay None."""
    terms = [(p * g).sum() for i, (ps, gs) in enumerate(zip(params, grads)) for j, (p, g) in enumerate(zip(ps, gs))
             if p.requires_grad and (i, j) not in unused]
    torch.stack(terms).sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_params_without_a_grad_are_not_touched_as_in_torch(backend: str, kind: str) -> None:
    """torch.optim skips a parameter whose .grad is None: no decay, no moment update, no step count for it."""
    params = make_params()
    params[2][0].requires_grad_(False)  # frozen by requires_grad inside a trainable group: never has a grad
    groups = flat_groups(params, [True] * 4)
    kw = dict(betas=(0.9, 0.99), eps=1e-6) if kind == "adamw" else dict(momentum=0.9)
    twin = TorchTwin(params, [dict(g) for g in groups], kind, **kw)
    twin.params[2][0].requires_grad_(False)
    opt = FlatOptimizer(groups, kind=kind, max_grad_norm=0.5, backend=backend, **kw)
    for step in range(10):
        unused = {(1, 1)} if step % 2 else set()  # layer.0's second param: used on even steps only
        unused |= {(3, 0)} if step in (2, 3) else set()  # the head's weight skips two steps in a row
        grads = grads_for(step, params, scale=3.0)
        opt.zero_grad()
        backward(params, grads, unused)
        assert params[2][0].grad is None and (params[1][1].grad is None) == bool(step % 2)
        opt.step()
        twin.step([[None if (i, j) in unused or not p.requires_grad else g for j, (p, g) in enumerate(zip(ps, gs))]
                   for i, (ps, gs) in enumerate(zip(params, grads))], 0.5)
        compare(opt, twin, params)
    state = opt.state_dict()["state"]
    assert 4 not in state  # layer.1's first param (parameter id 4) never had a grad: no state, as in torch
    assert int(state[3]["step"]) == 5 and int(state[6]["step"]) == 8  # own step counts: bias correction per param
