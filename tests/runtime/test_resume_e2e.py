"""`ftengine run` killed with SIGKILL (or stopped with Ctrl-C) and resumed ends exactly like an unbroken run.

Real processes, real tweets, a tiny random BERT (same code path as MiniLM, milliseconds per step) with the MiniLM
tokenizer. The plan unfreezes the top layer in stage 2, and checkpoints every 3 steps, so the kill lands mid-epoch
after the unfreeze.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import ftengine_run as _ftengine

TIMING = ("epoch_seconds", "samples_per_second")


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _stop_after(proc: subprocess.Popen, run_dir: Path, step: int, sig: int) -> dict:
    """Send `sig` once the latest checkpoint is at `step` or later; returns that pointer."""
    pointer = run_dir / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            latest = json.loads(pointer.read_text())
        except (OSError, ValueError):
            latest = None
        if latest and latest["global_step"] >= step:
            proc.send_signal(sig)
            return latest
        time.sleep(0.002)
    pytest.fail(f"the run ended or stalled before step {step}: {proc.communicate()[1][-2000:]}")


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_metrics(spec_file, reference, tmp_path):
    run_dir = spec_file.parent / "runs" / "killed"
    # 40 steps/epoch: stage "top" starts at step 40; step 55 is mid-epoch after the unfreeze.
    proc = _ftengine(str(spec_file), "output.name=killed", cache=tmp_path / "cache")
    _stop_after(proc, run_dir, 55, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["stage"] == 1 and json.loads((run_dir / "run.json").read_text())["status"] == "running"
    code, _out, err = _finish(_ftengine("--resume", str(run_dir), cache=tmp_path / "cache"))
    assert code == 0, err
    assert _rows(run_dir) == _rows(reference)
    final = json.loads((run_dir / "run.json").read_text())["final"]
    expected = json.loads((reference / "run.json").read_text())["final"]
    assert {k: v for k, v in final.items() if "seconds" not in k} == \
        {k: v for k, v in expected.items() if "seconds" not in k}


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resumes(spec_file, reference, tmp_path):
    run_dir = spec_file.parent / "runs" / "stopped"
    proc = _ftengine(str(spec_file), "output.name=stopped", cache=tmp_path / "cache")
    _stop_after(proc, run_dir, 20, signal.SIGINT)
    code, _, err = _finish(proc)
    assert code == 130
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"ftengine: interrupted; checkpoint saved in {run_dir} at stage ")
    assert "Traceback" not in err
    code, _out, err = _finish(_ftengine(str(spec_file), "output.name=stopped", "--resume", cache=tmp_path / "cache"))
    assert code == 0, err
    assert _rows(run_dir) == _rows(reference)
