"""Damaged checkpoints: named in one line (never a traceback), code in a checkpoint never runs, and --resume
falls back to the checkpoint saved before the damaged one."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

from ftengine.errors import RunError
from ftengine.runtime.checkpoint import PREVIOUS, CheckpointError, load_checkpoint, resume_point, save_checkpoint
from ftengine.runtime.loop import Trainer
from ftengine.runtime.seeding import capture_rng

TIMING = ("epoch_seconds", "samples_per_second")


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "optimizer": {}, "tracker": {}, "rng": capture_rng(),
            "metrics_rows": step, "best_stage": 0,
            "progress": {"stage": 0, "epoch": 0, "batches_done": step, "global_step": step}}


def _truncate(path, keep: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_truncated_checkpoint_is_named_in_one_line(tmp_path):
    path = save_checkpoint(tmp_path, "last", _state(1))
    _truncate(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path}: unreadable checkpoint, truncated or damaged (PytorchStreamReader failed "
                              "reading zip archive: failed finding central directory)")
    assert err.value.exit_code == 1 and "\n" not in str(err.value)


def test_a_checkpoint_with_code_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"format": 2, "model": {}, "payload": _RunsCode(marker)}, path)  # a full pickle, not weights-only
    with pytest.raises(CheckpointError, match=r"evil.pt: not a weights-only checkpoint, refused unread: nothing in it "
                                              r"ran \(.*GLOBAL posix.system.*\)"):
        load_checkpoint(path)
    assert not marker.exists()


def test_other_weights_only_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"weights.pt: not an ftengine checkpoint this version reads \(format "
                                              r"None; reads 1, 2\)"):
        load_checkpoint(path)


def test_last_keeps_the_one_before_it(tmp_path):
    first = save_checkpoint(tmp_path, "last", _state(1))
    assert not first.with_name(PREVIOUS).exists()
    save_checkpoint(tmp_path, "last", _state(2))
    save_checkpoint(tmp_path, "last", _state(3))
    assert load_checkpoint(first)["progress"]["global_step"] == 3
    assert load_checkpoint(first.with_name(PREVIOUS))["progress"]["global_step"] == 2
    assert sorted(p.name for p in first.parent.iterdir()) == ["checkpoint.pt", PREVIOUS]  # no temporaries
    save_checkpoint(tmp_path, "best", _state(3))
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "best").iterdir()) == ["checkpoint.pt"]


def test_save_and_load_print_no_library_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any torch warning (pickle protocol, weights_only) fails the test
        path = save_checkpoint(tmp_path, "last", _state(1))
        load_checkpoint(path)


def test_resume_point_falls_back_and_says_so(tmp_path):
    save_checkpoint(tmp_path, "last", _state(4))
    newest = save_checkpoint(tmp_path, "last", _state(8))
    _truncate(newest)
    said: list[str] = []
    path, state = resume_point(tmp_path, said.append)
    assert path == newest.with_name(PREVIOUS) and state["progress"]["global_step"] == 4
    assert said[0].startswith(f"--resume: {newest}: unreadable checkpoint, truncated or damaged")
    assert said[1] == (f"--resume: continuing from the checkpoint before it, {path} (step 4); the steps after it are "
                       "trained again")


def test_resume_point_without_a_usable_checkpoint_is_one_line(tmp_path):
    newest = save_checkpoint(tmp_path, "last", _state(4))
    _truncate(newest)
    with pytest.raises(RunError) as err:
        resume_point(tmp_path, lambda _: None)
    assert str(err.value) == (f"--resume: no usable checkpoint in {tmp_path} (checkpoints/last/checkpoint.pt "
                              "unreadable); this run cannot continue: start a new run with output.overwrite=true "
                              "(or another output.name)")
    assert resume_point(tmp_path / "elsewhere", lambda _: None) == (None, None)


def test_resume_past_a_truncated_last_checkpoint_ends_as_the_unbroken_run(toy_run, capsys):
    every = {"checkpoint_every_steps": 4}
    reference = toy_run("ref", output=every)
    original = Trainer._step

    def crash_at_10(self, stage, *args):
        original(self, stage, *args)
        if self.pos.global_step == 10:
            raise RuntimeError("killed")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError):
        mp.setattr(Trainer, "_step", crash_at_10)
        toy_run("crashed", output=every)
    last = reference.run_dir.parent / "crashed" / "checkpoints" / "last" / "checkpoint.pt"
    assert json.loads((last.parent.parent / "latest.json").read_text())["global_step"] == 8
    _truncate(last, keep=last.stat().st_size // 2)
    capsys.readouterr()
    resumed = toy_run("crashed", resume=True, output=every)
    err = capsys.readouterr().err
    assert f"--resume: {last}: unreadable checkpoint, truncated or damaged" in err
    assert f"continuing from the checkpoint before it, {last.with_name(PREVIOUS)} (step 6)" in err
    rows = [[{k: v for k, v in json.loads(line).items() if k not in TIMING}
             for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()] for r in (resumed, reference)]
    assert rows[0] == rows[1]
