"""bench/gpu_check.sh: its dry run (every step on tiny sizes, on the CPU, with the installed package) and its usage.

The dry run is the GPU check's CI: a step that breaks here would break on the rare GPU machine too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
STEPS = ["install", "build", "backend", "tests", "optimizer", "optimizer-1b", "cache", "e2e", "profile", "fill"]
FILES = ["cache.json", "e2e.json", "fill.json", "gpu_check.log", "optimizer.json", "profile.json", "pytest.xml",
         "summary.json"]


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout, check=False)


def test_usage_without_arguments_exits_2() -> None:
    proc = _run()
    assert proc.returncode == 2
    assert "bench/gpu_check.sh --prepare" in proc.stdout and "--dry-run OUT_DIR" in proc.stdout


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_its_files(tmp_path: Path) -> None:
    proc = _run("--dry-run", str(tmp_path), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES  # at most 8 files come back from a GPU machine

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS
    assert summary["failed_steps"] == [] and all(s["rc"] == 0 for s in summary["steps"])
    assert summary["environment"]["device"] == "cpu" and summary["environment"]["torch"]
    assert "=== [collect] rc=0" in (tmp_path / "gpu_check.log").read_text()

    junit = ET.parse(tmp_path / "pytest.xml").getroot()
    assert sum(int(s.get("tests", 0)) for s in junit.iter("testsuite")) > 0  # gpu tests collected (and skipped)

    optimizer = json.loads((tmp_path / "optimizer.json").read_text())
    assert {r["model"] for r in optimizer["results"]} == {"minilm-l6", "bert-base", "llama-1b"}
    assert all(r["validation"] == "ok" for r in optimizer["results"])  # fp32: every implementation is compared
    assert all(r["copy_gbps"] > 0 for r in optimizer["results"])  # the copy baseline ran in the same rounds
    assert "optimizer_minilm_26_groups_ge_2.0x_torch_fused" in summary["targets"]

    cache = json.loads((tmp_path / "cache.json").read_text())
    assert cache["settings"]["random_init"] and "feature_extraction" in cache["scenarios"]
    assert cache["gather"]["fp32"]["reference_ratio_to_copy"] > 0

    e2e = json.loads((tmp_path / "e2e.json").read_text())
    assert set(e2e["summary"]["quickstart"]) == {"ftengine", "hf"} and e2e["settings"]["random_init"]
    assert e2e["settings"]["train_tokens"] > 0
    for figures in e2e["summary"]["quickstart"].values():  # two stages: head, then head + top layers
        assert {"stage0_tokens_per_second", "stage1_tokens_per_second"} <= set(figures)

    profile = json.loads((tmp_path / "profile.json").read_text())
    assert [s["stage"] for s in profile["stages"]] == ["s0", "s1"]
    assert all(s["top"] and s["wall_ms_per_step"] > 0 and s["table"] for s in profile["stages"])

    fill = json.loads((tmp_path / "fill.json").read_text())
    assert [(r["seed"], r["fill_precision"]) for r in fill["runs"]] == [(0, "fp32"), (0, "bf16")]
    assert all(r["fill_seconds"] > 0 and 0 <= r["best_val_accuracy"] <= 1 for r in fill["runs"])
    assert summary["fill_precision"]["bf16_vs_fp32"]["fill_speedup"] > 0
