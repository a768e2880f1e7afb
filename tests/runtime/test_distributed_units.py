"""The pieces of data-parallel training, in one process: the world from the environment, batch shares, the
gradient sync's ranges and byte counts, the launcher's arguments, signals, and the errors users see."""

from __future__ import annotations

import argparse
import os
import signal

import pytest
import torch

from ftengine.cli import build_parser, parse
from ftengine.cli.launch import launcher_argv, worker_argv
from ftengine.data.sampling import EpochBatchSampler
from ftengine.errors import RunError, SpecError
from ftengine.runtime import interrupts
from ftengine.runtime.distributed import World, _first_sentence
from ftengine.runtime.grad_sync import GradSync, trainable_ranges
from ftengine.runtime.optimizer import FlatOptimizer
from ftengine.runtime.ranks import check_world
from ftengine.spec import Spec


def test_world_from_the_launchers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert World.from_env() == World.solo() and not World.from_env().distributed
    env = dict(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", GROUP_RANK="1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    world = World.from_env()
    assert (world.rank, world.size, world.local_rank, world.local_size, world.node) == (3, 4, 1, 2, 1)
    assert world.distributed and not world.main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(RunError, match="RANK=4 is outside WORLD_SIZE=4"):
        World.from_env()


def test_nccl_without_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTENGINE_DIST_BACKEND", "nccl")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RunError, match="NCCL backend needs CUDA GPUs.*training.device=cpu"):
        World(rank=0, size=2).start(torch.device("cpu"))


def test_backend_errors_are_cut_to_their_gist() -> None:
    text = ("[/src/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:36047: Connection reset by peer. This is "
            "typically caused by a remote worker hanging")
    assert _first_sentence(text) == "Read error [127.0.0.1]:36047: Connection reset by peer"


@pytest.mark.parametrize("size", [10, 7, 16, 1])
def test_shares_partition_every_batch(size: int) -> None:
    """Rank r gets batch[r::world]: the shares are disjoint, cover the batch, and keep one process's order."""
    lengths = [(i * 7) % 13 + 1 for i in range(size)]
    whole = EpochBatchSampler(size, 4, shuffle=True, seed=1, lengths=lengths)
    shares = [EpochBatchSampler(size, 4, shuffle=True, seed=1, lengths=lengths, shard=(r, 3)) for r in range(3)]
    for s in (whole, *shares):
        s.set_epoch(2)
        s.skip(1)
    batches = list(whole)
    per_rank = [list(s) for s in shares]
    assert all(len(p) == len(batches) for p in per_rank)  # every rank sees every step (empty shares included)
    for i, batch in enumerate(batches):
        assert sorted(sum((p[i] for p in per_rank), [])) == sorted(batch)
    assert shares[1].global_sizes() == [len(b) for b in batches]
    with pytest.raises(ValueError, match="shard"):
        EpochBatchSampler(size, 4, shuffle=False, shard=(3, 3))


def test_batch_size_must_split_over_the_processes() -> None:
    spec = Spec.model_validate({"backbone": {"kind": "torchvision", "arch": "resnet18"}, "head": {"kind": "linear"},
                                "data": {"kind": "sklearn_digits"}, "training": {"batch_size": 10}})
    check_world(spec, World(size=5))
    with pytest.raises(SpecError, match="10 examples per batch do not split over 4 processes.*e.g. 8.*2 or 5 or 10"):
        check_world(spec, World(size=4))


def test_trainable_ranges_merge_neighbours() -> None:
    segments = [(0, 64), (64, 128), (192, 64), (256, 0), (256, 64)]
    assert trainable_ranges(segments, [False, True, True, True, True]) == [(64, 320)]
    # an empty frozen group between two trainable ones does not split their range
    assert trainable_ranges(segments, [True, False, True, False, True]) == [(0, 64), (192, 320)]
    assert trainable_ranges(segments, [False] * 5) == []


class _TwoRanks(World):
    """A world of 2 whose other rank had the same gradients as this one (an all-reduce doubles), counting bytes."""

    def __init__(self) -> None:
        super().__init__(rank=0, size=2, local_size=2)
        self.calls: list[tuple[str, int]] = []

    def all_reduce_(self, tensor, *, op="sum", purpose="control", what=""):  # noqa: ANN001, ANN201
        self.sent[purpose] += tensor.numel() * tensor.element_size()
        self.calls.append((purpose, tensor.numel()))
        if purpose == "control":
            return tensor.mul_(2) if tensor.numel() > 3 else tensor
        return tensor.mul_(2)


def test_grad_sync_reduces_only_the_trainable_tail() -> None:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(8, 8) for _ in range(3)]
    groups = [dict(params=list(m.parameters()), name=f"g{i}", lr=0.1, trainable=i > 0) for i, m in enumerate(layers)]
    opt = FlatOptimizer(groups, backend="reference")
    world = _TwoRanks()
    sync = GradSync(world, opt)
    x = torch.randn(4, 8)
    layers[2](layers[1](x)).sum().backward()  # g0 unused: frozen anyway
    before = {id(p): p.grad.clone() for m in layers[1:] for p in m.parameters()}
    agreed = sync.step(stop=False, finite=torch.tensor(True), loss_sum=torch.tensor(1.5))
    grads = [(p, before[id(p)]) for m in layers[1:] for p in m.parameters()]
    assert all(torch.equal(p.grad, 2 * g) for p, g in grads)  # summed over the (two) ranks
    assert world.sent["grads"] == sync.trainable_bytes() == sum(
        length for (_, length), g in zip(opt.buckets[0].layout.segments, groups) if g["trainable"]) * 4
    assert [purpose for purpose, _ in world.calls] == ["control", "grads"]  # one range: g1 and g2 are neighbours
    assert agreed.stop is False and bool(agreed.finite)
    assert float(agreed.loss_sum) == 3.0


def test_grad_sync_gives_zero_grads_where_only_another_rank_had_one() -> None:
    """A rank whose share of the batch was empty has no grads; the other rank's are summed with its zeros, and the
    parameters are stepped on both (as they are on the rank that had gradients)."""
    layer = torch.nn.Linear(4, 2)
    opt = FlatOptimizer([dict(params=list(layer.parameters()), name="head", lr=0.1, trainable=True)],
                        backend="reference")
    layer(torch.randn(3, 4)).sum().backward()
    opt.zero_grad()  # this rank: nothing this step (grads None, stale values in the flat buffer)
    bucket = opt.buckets[0]
    for p, offset in bucket.slots:  # stale values from an earlier step (the alignment gaps stay zero)
        bucket.grad[offset:offset + p.numel()].fill_(7.0)

    class OtherHadGrads(_TwoRanks):
        def all_reduce_(self, tensor, *, op="sum", purpose="control", what=""):  # noqa: ANN001, ANN201
            if purpose == "control":
                tensor[:-3] = 1.0  # the other rank had every gradient
                return tensor
            self.seen = tensor.clone()
            return tensor

    world = OtherHadGrads()
    GradSync(world, opt).step(stop=True, finite=torch.tensor(True), loss_sum=torch.tensor(0.0))
    assert torch.count_nonzero(world.seen) == 0  # this rank contributed zeros, not stale values
    assert all(p.grad is not None for p in layer.parameters())


def test_one_process_sync_is_the_identity() -> None:
    layer = torch.nn.Linear(2, 2)
    opt = FlatOptimizer([dict(params=list(layer.parameters()), name="head", lr=0.1)], backend="reference")
    finite, loss = torch.tensor(False), torch.tensor(2.0)
    agreed = GradSync(World.solo(), opt).step(stop=True, finite=finite, loss_sum=loss)
    assert agreed.stop and agreed.finite is finite and agreed.loss_sum is loss


def test_launcher_passes_the_command_line_without_nproc() -> None:
    args = parse(build_parser(), ["run", "s.yaml", "--nproc", "2", "training.epochs=1", "--allow-module", "pkg",
                                  "--quiet"])
    assert args.nproc == 2 and args.overrides == ["training.epochs=1"]
    worker = worker_argv(args)
    assert worker == ["run", "s.yaml", "training.epochs=1", "--quiet", "--allow-module", "pkg"]
    assert launcher_argv(2, worker)[:4] == ["--standalone", "--nproc_per_node=2", "--max_restarts=0", "-m"]
    resume = worker_argv(argparse.Namespace(spec=None, overrides=[], resume="runs/x", quiet=False))
    assert resume == ["run", "--resume", "runs/x"]
    with pytest.raises(SystemExit):
        parse(build_parser(), ["run", "s.yaml", "--nproc", "2", "--bogus"])


def test_sigterm_stops_like_ctrl_c_and_a_launchers_repeat_is_not_a_second_one(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(interrupts.time, "monotonic", lambda: clock[0])
    with interrupts.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)  # the launcher passing Ctrl-C on, at once: the same request
        clock[0] += interrupts.REPEAT_WINDOW + 1
        with pytest.raises(KeyboardInterrupt):  # a real second Ctrl-C aborts
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_empty_share_is_recognised_after_a_dataloader_worker() -> None:
    """A worker process sends the empty share back as a copy: it is found by content, not identity."""
    from torch.utils.data import DataLoader

    from ftengine.data.bundle import EMPTY_BATCH, _ShareCollate, is_empty

    sampler = EpochBatchSampler(5, 4, shuffle=False, shard=(1, 2))  # batches [0..3], [4]: rank 1 gets [1, 3], []
    loader = DataLoader(list(range(5)), batch_sampler=sampler, num_workers=1,
                        collate_fn=_ShareCollate(lambda items: {"x": torch.tensor(items)}))
    batches = list(loader)
    assert batches[0]["x"].tolist() == [1, 3]
    assert [is_empty(b) for b in batches] == [False, True] and batches[1] is not EMPTY_BATCH


def test_cpu_ranks_share_the_machines_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from ftengine.runtime.ranks import world_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert world_threads(World(size=8, local_size=4), torch.device("cpu")) == 4  # torchrun alone would give 1
    assert world_threads(World(size=32, local_size=32), torch.device("cpu")) == 1
    assert world_threads(World.solo(), torch.device("cpu")) is None  # one process: torch's own choice
