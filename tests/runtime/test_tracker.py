"""Best metric, early stopping (run level, restarted per stage) and until_plateau stage ends."""

from __future__ import annotations

from types import SimpleNamespace

from ftengine.runtime.tracker import Tracker

PLAIN = SimpleNamespace(until_plateau=False, patience=None)


def test_early_stopping_after_patience_epochs_without_a_new_best():
    t = Tracker(mode="max", patience=2)
    verdicts = [t.update(v, i, PLAIN) for i, v in enumerate([0.5, 0.6, 0.59, 0.6, 0.55], start=1)]
    assert [v.improved for v in verdicts] == [True, True, False, False, False]
    assert [v.stop_run for v in verdicts] == [False, False, False, True, True]
    assert t.best == 0.6 and t.best_epoch == 2


def test_min_delta_and_min_mode():
    t = Tracker(mode="min", min_delta=0.01)
    assert t.update(1.0, 1, PLAIN).improved
    assert not t.update(0.995, 2, PLAIN).improved  # within min_delta
    assert t.update(0.98, 3, PLAIN).improved
    assert not t.update(float("nan"), 4, PLAIN).improved


def test_plateau_ends_the_stage_relative_to_the_stage_best():
    stage = SimpleNamespace(until_plateau=True, patience=1)
    t = Tracker(mode="max")
    t.start_stage()
    assert not t.update(0.7, 1, stage).end_stage
    assert t.update(0.69, 2, stage).end_stage
    t.start_stage()  # the next stage starts its own reference, even below the run's best
    assert not t.update(0.65, 3, stage).end_stage
    assert not t.update(0.66, 4, stage).end_stage
    assert t.update(0.66, 5, stage).end_stage
    assert t.best == 0.7


def test_new_stage_restarts_the_early_stopping_count_and_state_round_trips():
    t = Tracker(mode="max", patience=2)
    t.update(0.9, 1, PLAIN)
    t.update(0.8, 2, PLAIN)
    t.start_stage()
    assert not t.update(0.8, 3, PLAIN).stop_run
    copy = Tracker(mode="max")
    copy.load_state_dict(t.state_dict())
    assert copy == t and copy.update(0.8, 4, PLAIN).stop_run
