"""TrainSettings: the loop's settings, read from the spec in one place."""

from __future__ import annotations

import dataclasses

import pytest
from toy import toy_spec

from ftengine.runtime.settings import TrainSettings


def test_eval_batch_size_defaults_to_twice_the_training_batch_size():
    assert TrainSettings.from_spec(toy_spec(training={"batch_size": 12})).eval_batch_size == 24
    explicit = toy_spec(training={"batch_size": 12, "eval_batch_size": 5})
    assert TrainSettings.from_spec(explicit).eval_batch_size == 5


def test_settings_come_from_training_output_and_data():
    spec = toy_spec(training={"grad_accum_steps": 3, "seed": 7, "log_every": 4, "max_steps": 9, "restore_best": False,
                              "early_stopping": {"metric": "val_loss"}},
                    output={"save_best": False, "save_last": False, "checkpoint_every_steps": 2, "plots": False},
                    data={"balance": "loss_weights"})
    s = TrainSettings.from_spec(spec)
    assert (s.grad_accum_steps, s.seed, s.log_every, s.max_steps) == (3, 7, 4, 9)
    assert (s.early_stopping_metric, s.restore_best, s.balance) == ("val_loss", False, "loss_weights")
    assert (s.save_best, s.save_last, s.checkpoint_every_steps, s.plots) == (False, False, 2, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]
