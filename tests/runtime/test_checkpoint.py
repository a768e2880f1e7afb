"""Atomic checkpoints: a failed write leaves the previous checkpoint (and pointer) intact; RNG states round-trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ftengine.errors import RunError
from ftengine.runtime.checkpoint import (
    DeltaState,
    atomic_write,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ftengine.runtime.seeding import capture_rng, restore_rng


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))},
                "progress": {"stage": 0, "epoch": 0, "batches_done": step, "global_step": step}}


def test_save_and_find_latest(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    path = save_checkpoint(tmp_path, "last", _state(3))
    assert latest_checkpoint(tmp_path) == path
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["global_step"] == 3
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3,), 3.0))


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "last", _state(1))

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, "last", _state(2))
    monkeypatch.undo()
    folder = tmp_path / "checkpoints" / "last"
    assert [p.name for p in folder.iterdir()] == ["checkpoint.pt"]  # no temporary left behind
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["progress"]["global_step"] == 1
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["global_step"] == 1


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "x.json"
    atomic_write(target, lambda f: f.write(b"old"))
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    save_checkpoint(tmp_path, "last", {**_state(0), "rng": state})
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(load_checkpoint(latest_checkpoint(tmp_path))["rng"])
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[0] == expected[0] and again[1] == expected[1] and torch.equal(again[2], expected[2])


# --- model weights as a delta over the pretrained backbone ---------------------------------------------------------

class _Tied(torch.nn.Module):
    """A 'pretrained' body (emb, layer) under a new head; `out` shares its weight with `emb` (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.layer = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.out = torch.nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight
        self.head = torch.nn.Linear(4, 2)


def _train(model: torch.nn.Module, names: set[str]) -> DeltaState:
    weights = DeltaState(model, {"head.weight", "head.bias"})
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    weights.mark_trainable()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in names or n.startswith("head."):
                p.add_(1.0)
        model.norm.running_mean.add_(0.5)  # buffers are always stored
    return weights


def test_delta_stores_only_what_trained_and_restores_the_whole_model(tmp_path):
    trained = _Tied()
    state = _train(trained, {"layer.weight"}).state()
    assert set(state["model"]) == {"layer.weight", "head.weight", "head.bias", "norm.running_mean",
                                   "norm.running_var", "norm.num_batches_tracked"}
    assert state["base"]["params"] == ["emb.weight", "layer.bias", "norm.bias", "norm.weight", "out.weight"]
    path = save_checkpoint(tmp_path, "best", state)
    fresh = _Tied()  # the spec rebuilt: pretrained body, a head to be overwritten
    DeltaState(fresh, set()).restore(load_checkpoint(path), str(path))
    expected = trained.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in fresh.state_dict().items())


def test_a_tied_weight_counts_as_trained_under_every_name():
    state = _train(_Tied(), {"emb.weight"}).state()
    assert {"emb.weight", "out.weight"} <= set(state["model"])
    assert "out.weight" not in state["base"]["params"]


def test_changed_pretrained_weights_are_refused(tmp_path):
    path = save_checkpoint(tmp_path, "best", _train(_Tied(), {"layer.weight"}).state())
    other = _Tied()
    with torch.no_grad():
        other.emb.weight[0, 0] += 1e-3  # a different weights file under the same names
    with pytest.raises(RunError, match=r"where: the pretrained weights of the 5 parameters this checkpoint does not "
                                       r"store \(frozen since the start\) differ"):
        DeltaState(other, set()).restore(load_checkpoint(path), "where")


def test_a_checkpoint_of_another_model_is_refused():
    state = _train(_Tied(), {"layer.weight"}).state()
    state["model"]["extra.weight"] = torch.zeros(1)
    with pytest.raises(RunError, match=r"do not fit this model \(1 parameter names differ, e.g. 'extra.weight'\)"):
        DeltaState(_Tied(), set()).restore(state, "where")


def test_full_state_dicts_from_format_1_still_load():
    trained = _Tied()
    _train(trained, {"layer.weight"})
    fresh = _Tied()
    weights = DeltaState(fresh, set())
    weights.restore({"format": 1, "model": trained.state_dict()}, "where")
    assert torch.equal(fresh.layer.weight, trained.layer.weight)
    assert weights.trained >= {"emb.weight", "layer.weight"}  # everything stored counts as trained from now on
