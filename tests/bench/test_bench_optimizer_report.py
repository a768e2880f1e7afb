"""The optimizer bench's table and chart, on a small hand-made result."""

from __future__ import annotations

import statistics
from pathlib import Path

from ftengine.bench.optimizer_report import plot, table


def _row(case: str, impl: str, ms_all: list[float], speedup: float | None) -> dict:
    return {"case": case, "impl": impl, "validation": "ok", "ms_median": statistics.median(ms_all),
            "ms_min": min(ms_all), "ms_max": max(ms_all), "ms_all": ms_all, "gbps": 10.0, "ratio_to_copy": 1.5,
            "speedup_vs_torch_fused": speedup}


def _result() -> dict:
    fused = {"m/g2/fp32/frozen0": [12.0, 10.0, 11.0], "m/g2/fp32/frozen50": [6.0, 5.0, 7.0]}
    ours = {"m/g2/fp32/frozen0": [8.0, 9.5, 8.5], "m/g2/fp32/frozen50": [4.0, 4.5, 4.25]}
    rows = []
    for case, ms_fused in fused.items():
        rows.append(_row(case, "ftengine", ours[case], statistics.median(ms_fused) / statistics.median(ours[case])))
        rows.append(_row(case, "torch-fused", ms_fused, 1.0))
    env = {"device": "cpu", "device_name": "Test CPU", "torch_threads": 2, "date": "2026-01-02T03:04:05+0000"}
    return {"benchmark": "optimizer", "environment": env, "settings": {"reps": 3}, "results": rows}


def test_table_has_medians_spread_and_speedup() -> None:
    result = _result()
    text = table(result)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["case", "impl", "ms/step"] and len(lines) == 2 + 4
    ours = lines[2].split()
    assert ours[:5] == ["m/g2/fp32/frozen0", "ftengine", "8.5", "8.0-9.5", "10.0"]
    assert ours[6] == f"{11.0 / 8.5:.2f}x" and ours[-1] == "ok"
    assert lines[5].split()[:4] == ["m/g2/fp32/frozen50", "torch-fused", "6.0", "5.0-7.0"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "optimizer.png"
    plot(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
