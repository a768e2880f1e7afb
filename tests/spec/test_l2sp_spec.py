"""`optimizer.l2sp`: multipliers default to none, must be >= 0 (0 turns L2-SP off for a group)."""

from __future__ import annotations

from pathlib import Path

from spec_helpers import MINIMAL, problems, write

from ftengine.spec import load_spec


def test_multipliers_default_empty_and_zero_is_allowed(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {**MINIMAL, "optimizer": {"l2sp": {"strength": 0.01}}}))
    assert spec.optimizer.l2sp is not None and spec.optimizer.l2sp.multipliers == {}
    spec = load_spec(write(tmp_path, {**MINIMAL, "optimizer": {"l2sp": {"strength": 0.01, "multipliers": {
        "embeddings": 10, "encoder.layer.4-5": 0}}}}))
    assert spec.optimizer.l2sp.multipliers == {"embeddings": 10.0, "encoder.layer.4-5": 0.0}


def test_negative_multiplier_is_one_clear_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, {**MINIMAL, "optimizer": {"l2sp": {"strength": 0.01, "multipliers": {
        "embeddings": -1, "encoder.layer.5": 2}}}})
    assert len(lines) == 1
    assert lines[0].startswith("optimizer.l2sp.multipliers: multipliers must be >= 0 (got {'embeddings': -1.0}); "
                               "use 0 to turn L2-SP off for a group"), lines
