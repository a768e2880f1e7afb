"""End-to-end runs of the real runtime on the toy model: outputs, resume, Ctrl-C, early stopping, caching."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import torch

from ftengine.errors import RunError
from ftengine.runtime.interrupts import Interrupted
from ftengine.runtime.loop import Trainer

TIMING = ("epoch_seconds", "samples_per_second")


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    import ftengine.runtime.run as run_module

    if not hasattr(run_module, "write_report"):
        return
    try:
        import ftengine.runtime.report  # noqa: F401
    except ImportError:  # the test report lands separately; the loop does not depend on it
        monkeypatch.setattr(run_module, "write_report", lambda *a, **k: None)


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _at_step(mp, step, action):
    """Call `action()` right after optimizer step `step`."""
    original = Trainer._step

    def step_then_act(self, stage, *args):
        original(self, stage, *args)
        if self.pos.global_step == step:
            action()

    mp.setattr(Trainer, "_step", step_then_act)


def _crash():
    raise RuntimeError("killed")


def test_run_directory_contents_and_stages(toy_run):
    result = toy_run()
    rows = _rows(result.run_dir)
    assert [r["stage"] for r in rows] == ["head", "head", "top", "top"]
    assert set(rows[0]["lr"]) == {"head"} and set(rows[-1]["lr"]) == {"head", "block2"}
    assert [r["step"] for r in rows] == [6, 12, 18, 24]  # 96 examples / batch 16 = 6 steps per epoch
    for name in ("spec.resolved.yaml", "plan.json", "labels.json", "run.json", "model/model.safetensors",
                 "model/head.json", "checkpoints/last/checkpoint.pt", "checkpoints/best/checkpoint.pt"):
        assert (result.run_dir / name).is_file(), name
    assert json.loads((result.run_dir / "labels.json").read_text()) == ["a", "b", "c"]
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "finished"
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert result.metrics["val_accuracy"] == best["val_accuracy"] and result.metrics["epoch"] == best["epoch"]


def test_frozen_groups_and_their_batchnorm_statistics_do_not_change(toy_run, monkeypatch):
    seen = {}
    original = Trainer.fit

    def fit(self):
        seen["before"] = {k: v.clone() for k, v in self.model.backbone.state_dict().items()}
        original(self)
        seen["after"] = {k: v.clone() for k, v in self.model.backbone.state_dict().items()}

    monkeypatch.setattr(Trainer, "fit", fit)
    toy_run(training={"restore_best": False})
    before, after = seen["before"], seen["after"]
    for key in before:  # stem (with BatchNorm running stats) and block1 are frozen in every stage
        same = torch.equal(before[key], after[key])
        assert same == (not key.startswith("block2")), key


def test_checkpoints_store_only_groups_that_trained(toy_run):
    from ftengine.runtime.checkpoint import load_checkpoint

    run_dir = toy_run().run_dir
    last = load_checkpoint(run_dir / "checkpoints/last/checkpoint.pt")
    stored = {k for k in last["model"] if not k.startswith("backbone.stem.1.running") and "num_batches" not in k}
    assert stored == {"backbone.block2.0.weight", "backbone.block2.0.bias", "head.fc.weight", "head.fc.bias"}
    assert last["base"]["params"] == sorted(f"backbone.{m}.{p}" for m in ("stem.0", "stem.1", "block1.0")
                                            for p in ("weight", "bias"))


def test_restoring_a_best_epoch_from_before_an_unfreeze_restores_the_pretrained_top_group(toy_run, monkeypatch):
    """Best = epoch 1 (head only); block2 trains after it. The final weights must be epoch 1's, block2 pretrained."""
    from ftengine.runtime import tracker as tracker_module
    from ftengine.runtime.checkpoint import load_checkpoint

    original = tracker_module.Tracker.update
    seen: dict[str, torch.Tensor] = {}

    def first_epoch_is_best(self, value, epoch, stage):
        verdict = original(self, value, epoch, stage)
        return tracker_module.Verdict(improved=epoch == 1, stop_run=False, end_stage=verdict.end_stage)

    def keep_epoch_one(self, stage):
        if self.pos.epochs_done == 1 and not seen:  # stage "top" starts: block2 is still pretrained here
            seen.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return original_apply(self, stage)

    original_apply = Trainer._apply_stage
    monkeypatch.setattr(tracker_module.Tracker, "update", first_epoch_is_best)
    monkeypatch.setattr(Trainer, "_apply_stage", keep_epoch_one)
    result = toy_run(training={"restore_best": True})
    best = load_checkpoint(result.run_dir / "checkpoints/best/checkpoint.pt")
    assert "backbone.block2.0.weight" in best["model"]  # taken along when block2 was unfrozen
    from safetensors.torch import load_file

    final = load_file(str(result.run_dir / "model/model.safetensors"))
    assert final.keys() == seen.keys()
    assert all(torch.equal(final[k], seen[k]) for k in final)


def test_refuses_to_overwrite_a_finished_run(toy_run):
    toy_run()
    with pytest.raises(RunError, match=r"finished run is already there.*--resume.*output.overwrite=true"):
        toy_run()
    assert toy_run(output={"overwrite": True}).metrics["epochs_run"] == 4


@pytest.mark.parametrize("crash_step", [9, 12])  # mid-epoch (after a step checkpoint) and right at an epoch end
def test_resume_after_a_crash_ends_with_the_same_metrics(toy_run, crash_step):
    every = {"checkpoint_every_steps": 4}
    reference = toy_run("ref", output=every)
    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError):
        _at_step(mp, crash_step, _crash)
        toy_run("crashed", output=every)
    resumed = toy_run("crashed", resume=True, output=every)
    assert _rows(resumed.run_dir) == _rows(reference.run_dir)
    assert {k: v for k, v in resumed.metrics.items() if "seconds" not in k} == \
        {k: v for k, v in reference.metrics.items() if "seconds" not in k}


def test_ctrl_c_saves_and_resume_continues(toy_run):
    reference = toy_run("ref")
    before, term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with SIGINT ignored
    try:
        with pytest.MonkeyPatch.context() as mp, pytest.raises(Interrupted, match="interrupted; checkpoint saved") \
                as err:
            _at_step(mp, 8, lambda: os.kill(os.getpid(), signal.SIGINT))
            toy_run("stopped")
        assert err.value.exit_code == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
        assert signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGINT, before)
    stopped = json.loads((reference.run_dir.parent / "stopped" / "run.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["error"] == str(err.value)
    assert _rows(toy_run("stopped", resume=True).run_dir) == _rows(reference.run_dir)


def test_grad_accumulation_matches_the_larger_batch(toy_run):
    """Head only (frozen backbone in eval mode), no dropout: 2 x 8 accumulated is one batch of 16 (same order).
    SGD, unclipped: its update scales with the gradient, so a wrongly scaled accumulation shows."""
    same = {"freeze": {"stages": [{"trainable": ["head"], "epochs": 2}]}, "head": {"dropout": 0.0},
            "optimizer": {"kind": "sgd", "head_lr": 0.5, "max_grad_norm": None}}
    big = toy_run("big", training={"batch_size": 16}, **same)
    small = toy_run("small", training={"batch_size": 8, "grad_accum_steps": 2}, **same)
    a, b = _rows(big.run_dir), _rows(small.run_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [6, 12]
    for x, y in zip(a, b, strict=True):
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)


def test_early_stopping_and_plateau(toy_run):
    stopped = toy_run("stop", freeze={"stages": [{"trainable": ["head"], "epochs": 30}]},
                      optimizer={"head_lr": 1e-6},
                      training={"early_stopping": {"metric": "val_loss", "patience": 2, "min_delta": 1.0}})
    assert len(_rows(stopped.run_dir)) == 3  # epoch 1 sets the best; 2 and 3 do not beat it by min_delta
    plateau = toy_run("plateau", freeze={"stages": [
        {"name": "probe", "trainable": ["head"], "epochs": 20, "until_plateau": True, "patience": 1},
        {"name": "top", "trainable": ["head", "block2"], "epochs": 1}]}, optimizer={"head_lr": 1e-7})
    rows = _rows(plateau.run_dir)
    assert [r["stage"] for r in rows][-1] == "top" and len(rows) < 21


def test_cached_run_equals_uncached_run(toy_run):
    cached = toy_run("cached", cache={"enabled": "auto"})
    live = toy_run("live", cache={"enabled": "off"})
    for a, b in zip(_rows(cached.run_dir), _rows(live.run_dir), strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_the_cache_line_says_what_was_filled_and_what_was_reused(toy_run, capsys, tmp_path):
    def cache_line() -> str:
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("activation cache: "))

    toy_run("cold", quiet=False, cache={"enabled": "auto", "persist": True})
    cold = cache_line()
    toy_run("warm", quiet=False, cache={"enabled": "auto", "persist": True})  # same data and model: every entry
    warm = cache_line()
    filled = re.search(r"\(filled (\d+) entries in [0-9.]+s, ", cold)
    assert filled and "reused" not in cold
    assert f"(reused {filled[1]} from {tmp_path / 'cache'}" in warm and "filled" not in warm


def test_each_stage_hands_back_the_weights_below_its_cached_boundary(toy_run, monkeypatch):
    from ftengine.runtime.optimizer import FlatOptimizer

    asked: list[set[str]] = []
    real = FlatOptimizer.page_out

    def spy(self, groups):
        groups = list(groups)
        asked.append({self.param_groups[i]["name"].rsplit("/", 1)[0] for i in groups})
        return real(self, groups)

    monkeypatch.setattr(FlatOptimizer, "page_out", spy)
    toy_run("cached", cache={"enabled": "auto"})
    # stage "head" starts after block2 (every backbone group cached) but stage "top" runs block2 (from block1's
    # output): only what neither stage reads leaves, at each stage start
    assert asked == [{"stem", "block1"}, {"stem", "block1"}]
    asked.clear()
    toy_run("live", cache={"enabled": "off"})
    assert asked == []  # nothing cached: every group runs in every stage


def test_a_run_on_the_weights_file_equals_one_on_anonymous_memory(toy_run, monkeypatch):
    import ftengine.kernels.flat as flat
    import ftengine.runtime.run as run_module
    from ftengine.runtime.optimizer import FlatOptimizer

    backed: list[bool] = []
    real = FlatOptimizer.page_out

    def spy(self, groups):
        backed.append(all(b.backing is not None for b in self.buckets))
        return real(self, groups)

    monkeypatch.setattr(FlatOptimizer, "page_out", spy)
    monkeypatch.setattr(flat, "LAZY_BYTES", 0)  # the toy's few kB go to a file too
    mapped = toy_run("mapped", cache={"enabled": "auto"})
    assert backed == [True, True]
    monkeypatch.setattr(run_module, "weights_pageable", lambda graph, device: False)
    anonymous = toy_run("anonymous", cache={"enabled": "auto"})
    assert backed[2:] == [False, False]
    assert _rows(mapped.run_dir) == _rows(anonymous.run_dir)  # every metric of every epoch, exactly


def test_resume_refuses_a_changed_plan(toy_run):
    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError):
        _at_step(mp, 8, _crash)
        toy_run("changed")
    with pytest.raises(RunError, match=r"^--resume: .*changed was trained with a different plan"):
        toy_run("changed", resume=True, optimizer={"lr": 0.5})


def test_overwrite_keeps_the_old_run_until_the_new_one_has_loaded(toy_run, monkeypatch):
    import ftengine.runtime.run as run_module

    first = toy_run()
    monkeypatch.setattr(run_module, "build", lambda *a, **k: (_ for _ in ()).throw(RunError("data.train: missing")))
    with pytest.raises(RunError, match="data.train: missing"):
        toy_run(output={"overwrite": True})
    assert (first.run_dir / "model" / "model.safetensors").is_file()


def test_never_deletes_a_folder_that_is_not_a_run(toy_run, tmp_path):
    precious = tmp_path / "runs" / "toy"
    precious.mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError, match=r"already exists and is not an ftengine run directory"):
        toy_run(output={"overwrite": True})
    assert (precious / "thesis.tex").read_text() == "years of work"
