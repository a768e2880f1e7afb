"""Atomic checkpoints: a failed write leaves the previous checkpoint (and pointer) intact; RNG states round-trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ftengine.runtime.checkpoint import atomic_write, latest_checkpoint, load_checkpoint, save_checkpoint
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
