"""Run bench suites by name: measure, write the JSON result and its chart, print the table (`ftengine bench`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ftengine.bench.kit import echo
from ftengine.bench.options import SUITES, suite_args


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one suite; its result lines are printed as they come (a progress bar on stderr when it is a terminal).

    Each suite is imported here, when it runs: one suite's imports (transformers, torchvision) do not slow another.
    """
    if kind == "e2e" and getattr(args, "scale", "small") == "quickstart":
        from ftengine.bench import e2e_headline

        return e2e_headline.run_headline(args, log=echo)
    if kind == "e2e":
        from ftengine.bench import e2e

        return e2e.run_e2e_bench(args, log=echo)
    if kind == "cache":
        from ftengine.bench import cache

        return cache.run_cache_bench(args, log=echo)
    if kind == "ddp":
        from ftengine.bench import ddp

        return ddp.run_ddp_bench(args, log=echo)
    if kind == "forgetting":
        from ftengine.bench import forgetting

        return forgetting.run_forgetting_bench(args, log=echo)
    from ftengine.bench import optimizer

    return optimizer.run_sweep(args, log=echo)


def report(kind: str, result: dict[str, Any], out: Path) -> None:
    """Write the result JSON and its PNG chart, print the suite's table."""
    if kind == "e2e" and result.get("scale") == "quickstart":
        from ftengine.bench import e2e_headline as suite_report
    elif kind == "e2e":
        from ftengine.bench import e2e_report as suite_report
    elif kind == "cache":
        from ftengine.bench import cache_report as suite_report
    elif kind == "ddp":
        from ftengine.bench import ddp_report as suite_report
    elif kind == "forgetting":
        from ftengine.bench import forgetting_report as suite_report
    else:
        from ftengine.bench import optimizer_report as suite_report
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    suite_report.plot(result, out.with_suffix(".png"))
    print(suite_report.table(result), flush=True)
    print(f"wrote {out} and {out.with_suffix('.png').name}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the chosen suite (or all three), print its lines and table, write the JSON file and the chart."""
    runs = ([(kind, suite_args(kind, args)) for kind in SUITES] if args.bench_command == "all"
            else [(args.bench_command, args)])
    out_dir = getattr(args, "out_dir", Path("bench") / "results")
    for kind, suite in runs:
        if len(runs) > 1:
            print(f"== bench {kind}", flush=True)
        result = measure(kind, suite)
        device = str(getattr(suite, "device", "cpu")).replace(":", "")
        report(kind, result, suite.out or out_dir / f"{kind}-{device}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    return 0
