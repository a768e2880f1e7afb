"""`ftengine bench all`: its options, and that it runs the three suites and writes each one's JSON, chart and table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftengine.bench.options import SUITES, suite_args
from ftengine.cli import build_parser


def test_bench_all_shared_options_reach_each_suite(tmp_path: Path) -> None:
    argv = ["bench", "all", "--threads", "3", "--device", "cuda:1", "--out-dir", str(tmp_path)]
    args = build_parser().parse_args(argv)
    assert (args.bench_command, args.threads, args.device, args.out_dir) == ("all", 3, "cuda:1", tmp_path)
    optimizer, cache, e2e = (suite_args(kind, args) for kind in SUITES)
    assert optimizer.quick and (optimizer.device, optimizer.threads, optimizer.reps) == ("cuda:1", 3, 5)
    assert (cache.device, cache.threads, cache.repeats) == ("cuda:1", 3, 3)
    assert e2e.threads == 3 and e2e.device == "cpu" and e2e.recipes == "feature_extraction,gradual_unfreeze"
    defaults = build_parser().parse_args(["bench", "all"])
    assert (defaults.threads, defaults.device, defaults.out_dir) == (None, "cpu", Path("bench") / "results")
    assert suite_args("e2e", defaults).threads == 2  # e2e's own default when --threads is not given


def test_bench_all_runs_the_three_suites_in_order(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ftengine.bench import cache as cache_bench
    from ftengine.bench import cache_report, e2e_report
    from ftengine.bench import e2e as e2e_bench
    from ftengine.bench import optimizer as optim_bench
    from ftengine.bench import optimizer_report as optim_report

    calls: list[tuple[str, object]] = []

    def suite(kind: str):
        def run(args, log=print):
            calls.append((kind, args))
            log(f"{kind} line")
            return {"suite": kind}
        return run

    monkeypatch.setattr(optim_bench, "run_sweep", suite("optimizer"))
    monkeypatch.setattr(cache_bench, "run_cache_bench", suite("cache"))
    monkeypatch.setattr(e2e_bench, "run_e2e_bench", suite("e2e"))
    for module in (optim_report, cache_report, e2e_report):
        monkeypatch.setattr(module, "plot", lambda result, out: out.write_bytes(b"png " + result["suite"].encode()))
        monkeypatch.setattr(module, "table", lambda result: f"table of {result['suite']}")

    result = cli("bench", "all", "--threads", "2", "--out-dir", tmp_path)
    assert result.code == 0, result.err
    assert [kind for kind, _ in calls] == ["optimizer", "cache", "e2e"]
    assert calls[0][1].quick and all(args.threads == 2 for _, args in calls)
    assert result.out.splitlines() == [line for kind in SUITES
                                       for line in (f"== bench {kind}", f"{kind} line", f"table of {kind}")]
    for kind in SUITES:
        (path,) = tmp_path.glob(f"{kind}-cpu-*.json")
        assert json.loads(path.read_text()) == {"suite": kind}
        assert path.with_suffix(".png").read_bytes() == f"png {kind}".encode()
        assert f"wrote {path} and {path.with_suffix('.png').name}" in result.err


def test_bench_help_shows_all_with_an_example(cli) -> None:
    result = cli("bench", "all", "--help")
    assert result.code == 0
    assert "examples:\n  ftengine bench" in result.out and "\n  ftengine bench all --threads 2" in result.out
    assert "{optimizer,cache,e2e,ddp,forgetting,all}" in cli("bench", "--help").out
