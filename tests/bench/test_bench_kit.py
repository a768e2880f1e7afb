"""The bench suites' shared pieces: the progress bar keeps result lines whole; min/median/max of repeats."""

from __future__ import annotations

import pytest

from ftengine.bench.kit import progress, spread


def test_lines_go_through_the_log_with_or_without_a_bar(capsys: pytest.CaptureFixture[str]) -> None:
    for enabled in (False, True):
        lines: list[str] = []
        with progress(2, "suite", lines.append, enabled=enabled) as bar:
            for name in ("a", "b"):
                bar.start(name)
                bar.log(f"result {name}")
                bar.done()
        assert lines == ["result a", "result b"]
        err = capsys.readouterr().err
        assert ("suite" in err) is enabled  # the bar draws on stderr only when enabled


def test_spread_is_min_median_max_n() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    assert spread([1 / 3], digits=2) == {"min": 0.33, "median": 0.33, "max": 0.33, "n": 1}
