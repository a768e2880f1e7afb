"""A normal short run prints no library warnings (matplotlib, torch) into the user's terminal."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_short_run_with_plots_emits_no_warnings(toy_run, epochs):
    stages = {"stages": [{"name": "head", "trainable": ["head"], "epochs": epochs}]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # not hidden by "once" filters of earlier tests
        result = toy_run("one", freeze=stages, output={"plots": True})
    assert sorted(p.name for p in (result.run_dir / "plots").iterdir()) == \
        ["confusion_matrix.png", "loss.png", "lr.png", "metrics.png", "throughput.png"]
    assert [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught] == []
