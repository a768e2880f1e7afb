"""`ftengine run` killed with SIGKILL (or stopped with Ctrl-C) and resumed ends exactly like an unbroken run.

Real processes, real tweets, a tiny random BERT (same code path as MiniLM, milliseconds per step) with the MiniLM
tokenizer. The plan unfreezes the top layer in stage 2, and checkpoints every 3 steps, so the kill lands mid-epoch
after the unfreeze.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TIMING = ("epoch_seconds", "samples_per_second")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir: Path) -> Path:
    """A random 2-layer BERT (hidden 64) saved with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, tiny_bert: Path, tweets_csv: Path) -> Path:
    folder = tmp_path_factory.mktemp("spec")
    spec = {
        "backbone": {"kind": "hf", "source": str(tiny_bert)},
        "head": {"kind": "linear", "dropout": 0.1},
        "data": {"kind": "text", "train": str(tweets_csv), "encoding": "latin-1", "label_column": "sentiment",
                 "labels": ["negative", "neutral", "positive"], "limit": 400, "split": {"validation": 0.2},
                 "max_length": 48},
        "freeze": {"stages": [{"name": "head", "trainable": ["head"], "epochs": 1},
                              {"name": "top", "trainable": ["head", "encoder.layer.1"], "epochs": 3}]},
        "optimizer": {"lr": 1e-3, "head_lr": 1e-2},
        "schedule": {"kind": "cosine", "warmup_ratio": 0.1},
        "training": {"batch_size": 8, "threads": 1, "seed": 3},
        "output": {"dir": str(folder / "runs"), "checkpoint_every_steps": 3, "plots": False},
    }
    path = folder / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _ftengine(*args: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "FTENGINE_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "ftengine", "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


@pytest.fixture(scope="module")
def reference(spec_file: Path, tmp_path_factory) -> Path:
    code, out, err = _finish(_ftengine(str(spec_file), "output.name=reference",
                                       cache=tmp_path_factory.mktemp("cache")))
    assert code == 0, err
    return spec_file.parent / "runs" / "reference"


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
    code, out, err = _finish(_ftengine("--resume", str(run_dir), cache=tmp_path / "cache"))
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
    code, out, err = _finish(proc)
    assert code == 130
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"ftengine: interrupted; checkpoint saved in {run_dir} at stage ")
    assert "Traceback" not in err
    code, out, err = _finish(_ftengine(str(spec_file), "output.name=stopped", "--resume", cache=tmp_path / "cache"))
    assert code == 0, err
    assert _rows(run_dir) == _rows(reference)
