"""The cache bench's table and chart, on a small hand-made result."""

from __future__ import annotations

import statistics
from pathlib import Path

from ftengine.bench.cache_report import plot, table


def _timed(uncached: list[float], cached: list[float], bound: float) -> dict:
    speedup = statistics.median(uncached) / statistics.median(cached)
    return {"uncached_epoch_seconds": uncached, "cached_epoch_seconds": cached, "filling_epoch_seconds": 3.0,
            "median_uncached": statistics.median(uncached), "median_cached": statistics.median(cached),
            "speedup": round(speedup, 2), "derived_bound": bound, "fraction_of_bound": round(speedup / bound, 3),
            "ratios_per_pair": [round(u / c, 2) for u, c in zip(uncached, cached, strict=True)]}


def _result() -> dict:
    scenarios = {"feature_extraction": _timed([2.0, 2.5, 2.1], [0.02, 0.03, 0.025], 50.0),
                 "bottom4_frozen": _timed([4.0, 4.4, 3.8], [2.6, 2.5, 2.9], 1.5),
                 "gradual_3stage": {"boundaries": [8, 5, 3], "stage_epoch_seconds": [0.03, 2.7, 5.5],
                                    "fill_seconds": 2.6, "forward_passes_per_boundary": {"3": 1, "5": 1, "8": 1}}}
    env = {"device": "cpu", "cpu": "Test CPU", "gpu": None, "torch_threads": 2}
    return {"bench": "cache", "created": "2026-01-02T03:04:05+0000", "environment": env,
            "settings": {"examples": 64, "batch_size": 32, "dtype": "fp32"}, "scenarios": scenarios}


def test_table_has_medians_spread_speedup_and_bound() -> None:
    result = _result()
    lines = table(result).splitlines()
    assert lines[0].split()[:2] == ["scenario", "uncached"] and len(lines) == 2 + 3
    fe = lines[2].split()
    assert fe[:6] == ["feature_extraction", "2.100", "[2.000-2.500]", "3.000", "0.025", "[0.020-0.030]"]
    assert fe[6] == f"{2.1 / 0.025:.2f}x" and fe[8] == "50.00x"
    assert fe[9] == f"{100 * 2.1 / 0.025 / 50:.0f}%"
    bottom = lines[3].split()
    assert bottom[:2] == ["bottom4_frozen", f"{statistics.median([4.0, 4.4, 3.8]):.3f}"]
    assert bottom[7] == f"[{min(4.0 / 2.6, 4.4 / 2.5, 3.8 / 2.9):.2f}-{max(4.0 / 2.6, 4.4 / 2.5, 3.8 / 2.9):.2f}x]"
    assert lines[4].startswith("gradual_3stage") and "stage epochs 0.030, 2.700, 5.500 s" in lines[4]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "cache.png"
    plot(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
