"""Data-parallel runs end to end (CPU, gloo, 2 processes): the same model as one process through an unfreeze,
equal replicas at every stage, exactly the trainable bytes all-reduced, a killed rank, resume with another
world size."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cli_runs import ftengine_ranks, ftengine_run

# Float reduction order differs (a rank's share of a batch pads to its own longest example; gradients are summed
# over ranks), so results agree to rounding, not bits. Measured: weights 1e-8, losses 2e-7 after 45 steps.
TOL = {"loss": 1e-4, "weights": 1e-5}


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory, minilm_dir: Path) -> Path:
    """A random 2-layer BERT without dropout (one process and N processes then draw nothing different)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bert_nodrop")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def dist_spec(tmp_path_factory, no_dropout_bert: Path, tweets_csv: Path) -> Path:
    """Head stage (cached), then the top layer unfrozen; 121 training tweets in batches of 8 (so one batch a epoch
    holds a single example and one rank's share of it is empty); a checkpoint every 4 steps."""
    folder = tmp_path_factory.mktemp("dist")
    spec = {
        "backbone": {"kind": "hf", "source": str(no_dropout_bert)},
        "head": {"kind": "linear", "dropout": 0.0},
        "data": {"kind": "text", "train": str(tweets_csv), "encoding": "latin-1", "label_column": "sentiment",
                 "labels": ["negative", "neutral", "positive"], "limit": 151, "split": {"validation": 0.2},
                 "max_length": 40},
        "freeze": {"stages": [{"name": "head", "trainable": ["head"], "epochs": 1},
                              {"name": "top", "trainable": ["head", "encoder.layer.1"], "epochs": 2}]},
        "optimizer": {"lr": 1e-3, "head_lr": 1e-2},
        "schedule": {"kind": "cosine", "warmup_ratio": 0.1},
        "training": {"batch_size": 8, "threads": 1, "seed": 5},
        "output": {"dir": str(folder / "runs"), "checkpoint_every_steps": 4, "plots": False},
    }
    path = folder / "dist.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _finish(procs: list, timeout: float = 240) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _stdout, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def _run_dir(spec: Path, name: str) -> Path:
    return spec.parent / "runs" / name


@pytest.fixture(scope="module")
def one_process(dist_spec: Path, tmp_path_factory) -> Path:
    proc = ftengine_run(str(dist_spec), "output.name=one", cache=tmp_path_factory.mktemp("cache1"))
    _out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return _run_dir(dist_spec, "one")


@pytest.fixture(scope="module")
def two_processes(dist_spec: Path, tmp_path_factory) -> Path:
    results = _finish(ftengine_ranks(str(dist_spec), "output.name=two", nproc=2,
                                     cache=tmp_path_factory.mktemp("cache2")))
    assert [rc for rc, _ in results] == [0, 0], results
    return _run_dir(dist_spec, "two")


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def assert_same_training(a: Path, b: Path) -> None:
    """Per-epoch losses and metrics, and the final weights, agree within TOL."""
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("train_loss", "val_loss"):
            assert abs(ra[key] - rb[key]) < TOL["loss"], (key, ra, rb)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst < TOL["weights"], worst


def test_two_processes_train_the_one_process_model(one_process: Path, two_processes: Path) -> None:
    assert_same_training(one_process, two_processes)
    final_one = json.loads((one_process / "run.json").read_text())["final"]
    final_two = json.loads((two_processes / "run.json").read_text())["final"]
    assert abs(final_one["val_loss"] - final_two["val_loss"]) < TOL["loss"]


def test_replicas_equal_at_every_stage_and_only_trainable_bytes_move(two_processes: Path) -> None:
    record = json.loads((two_processes / "distributed.json").read_text())
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    stages = record["stages"]
    assert [s["stage"] for s in stages] == [0, 1]
    for s in stages:
        assert len(set(s["checksums"])) == 1, s  # every rank's parameters equal as the stage starts
    assert stages[0]["trainable_bytes"] < stages[1]["trainable_bytes"]  # the head, then the head + a layer
    # Every optimizer step all-reduced exactly its stage's trainable gradient bytes (counted by the collectives).
    rows = _rows(two_processes)
    head_steps = rows[0]["step"]
    top_steps = rows[-1]["step"] - head_steps
    expected = head_steps * stages[0]["trainable_bytes"] + top_steps * stages[1]["trainable_bytes"]
    assert record["bytes_sent"]["grads"] == expected
    # the frozen layers never moved: a frozen BERT layer alone is bigger than the whole head stage's traffic
    assert stages[0]["trainable_bytes"] < 64 * 64 * 4


def _wait_for_checkpoint(run_dir: Path, step: int, procs: list, timeout: float = 120) -> None:
    pointer = run_dir / "checkpoints" / "latest.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pointer.is_file():
            try:
                if json.loads(pointer.read_text())["global_step"] >= step:
                    return
            except (ValueError, KeyError):
                pass
        if any(p.poll() is not None for p in procs):
            raise AssertionError([p.communicate() for p in procs])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} within {timeout}s")


def test_killed_rank_stops_the_other_then_one_process_resumes(dist_spec: Path, one_process: Path,
                                                              tmp_path_factory) -> None:
    cache = tmp_path_factory.mktemp("cache3")
    procs = ftengine_ranks(str(dist_spec), "output.name=killed", nproc=2, cache=cache, timeout=30)
    run_dir = _run_dir(dist_spec, "killed")
    _wait_for_checkpoint(run_dir, 8, procs)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rc, err = _finish(procs[:1], timeout=60)[0]
    assert time.monotonic() - killed_at < 30  # within the collective timeout, not forever
    procs[1].communicate()
    assert rc == 1, err
    assert "rank 1 has died" in err and "--resume" in err, err
    assert "Traceback" not in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    # the 2-process run's checkpoint resumed by ONE process finishes with the uninterrupted run's numbers
    proc = ftengine_run("--resume", str(run_dir), cache=cache)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "resuming a 2-process run with 1" in out
    assert_same_training(one_process, run_dir)


def test_one_process_checkpoint_resumed_by_two(dist_spec: Path, one_process: Path, tmp_path_factory) -> None:
    cache = tmp_path_factory.mktemp("cache4")
    proc = ftengine_run(str(dist_spec), "output.name=grow", cache=cache)
    run_dir = _run_dir(dist_spec, "grow")
    _wait_for_checkpoint(run_dir, 20, [proc])
    proc.kill()
    proc.communicate()
    results = _finish(ftengine_ranks("--resume", str(run_dir), nproc=2, cache=cache))
    assert [rc for rc, _ in results] == [0, 0], results
    assert_same_training(one_process, run_dir)
