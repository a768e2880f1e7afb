"""A run whose loss turns NaN stops (exit 1, one line, last good checkpoint kept); metrics files stay strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ftengine.errors import RunError
from ftengine.runtime.checkpoint import load_checkpoint
from ftengine.runtime.loop import MAX_NONFINITE_STEPS
from ftengine.runtime.run_dir import MetricsLog, write_json
from toy import toy_build, toy_data, toy_spec

NO_CACHE = {"enabled": "off"}  # the poisoned inputs must reach every step, not a cache filled before them
ONE_STAGE = {"stages": [{"name": "head", "trainable": ["head"], "epochs": 3}]}


def _strict(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, as strict JSON readers do."""
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


class _Poison:
    """Turns the training inputs to NaN once `on` is set (the toy splits hand out views of their tensors)."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, spec: Any, spec_dir: Any, device: torch.device, **kwargs: Any) -> Any:
        data = toy_data()
        train, poison = data.train, self

        class Split(type(train)):  # the toy split, reading NaN pixels when poisoned
            def __getitem__(self, i: int) -> dict[str, Any]:
                item = super().__getitem__(i)
                return {**item, "pixels": item["pixels"] * math.nan} if poison.on else item

        data.train = Split(train.x, train.y)
        return toy_build(spec, spec_dir, device, data=data, **kwargs)


@pytest.mark.parametrize("skip_nonfinite", [True, False])
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, skip_nonfinite):
    import ftengine.runtime.run as run_module

    poison = _Poison()
    monkeypatch.setattr(run_module, "build", poison)
    original_append = MetricsLog.append

    def append_then_poison(self: MetricsLog, row: dict[str, Any]) -> None:
        original_append(self, row)
        poison.on = True  # from epoch 2 on: epoch 1 ends with a good checkpoint (6 steps of 16 examples)

    monkeypatch.setattr(MetricsLog, "append", append_then_poison)
    spec = toy_spec(freeze=ONE_STAGE, cache=NO_CACHE, optimizer={"skip_nonfinite": skip_nonfinite},
                    output={"dir": str(tmp_path / "runs"), "name": "nan", "plots": False})
    with pytest.raises(RunError) as info:
        run_module.run_spec(spec, tmp_path / "nan.yaml", quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert f"step {6 + MAX_NONFINITE_STEPS}: the loss or gradients were NaN/inf for {MAX_NONFINITE_STEPS} " \
           "consecutive steps" in message
    assert "optimizer.lr" in message and "training.precision=fp32" in message and "check the data" in message
    run_dir = tmp_path / "runs" / "nan"
    last = load_checkpoint(run_dir / "checkpoints" / "last" / "checkpoint.pt")
    assert last["progress"]["global_step"] == 6  # the epoch-1 checkpoint, not a state from the NaN steps
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    rows = [_strict(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [6]


def test_the_cli_exits_1_with_the_message(tmp_path, monkeypatch, capsys):
    import ftengine.runtime.run as run_module
    from ftengine.cli import main

    poison = _Poison()
    poison.on = True
    monkeypatch.setattr(run_module, "build", poison)
    spec = toy_spec(freeze=ONE_STAGE, cache=NO_CACHE, output={"dir": str(tmp_path / "runs"), "plots": False})
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True)))
    code = main(["run", str(path), "--quiet", "--allow-module", "toy"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"training: step {MAX_NONFINITE_STEPS}: the loss or gradients were NaN/inf")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_epoch_without_examples_logs_null_not_nan(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"epoch": 1, "train_loss": math.nan, "val_loss": math.inf, "lr": {"head": 1e-3, "x": -math.inf}})
    write_json(tmp_path / "run.json", {"final": {"val_loss": math.nan, "epoch": 1}})
    row = _strict((tmp_path / "metrics.jsonl").read_text())
    assert row == {"epoch": 1, "train_loss": None, "val_loss": None, "lr": {"head": 1e-3, "x": None}}
    assert _strict((tmp_path / "run.json").read_text()) == {"final": {"val_loss": None, "epoch": 1}}
    assert MetricsLog.read(tmp_path / "metrics.jsonl") == [row]


def test_report_json_is_strict(tmp_path: Path):
    from ftengine.runtime.report import build_report, write_report

    metrics = {**build_report(torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"]),
               "loss": math.nan}
    write_report(tmp_path, metrics, plots=False)
    assert _strict((tmp_path / "report.json").read_text())["loss"] is None


def test_a_failed_run_says_so_in_run_json_and_a_resume_clears_it(tmp_path, monkeypatch):
    import ftengine.runtime.run as run_module

    poison = _Poison()
    monkeypatch.setattr(run_module, "build", poison)
    original_append = MetricsLog.append

    def append_then_poison(self: MetricsLog, row: dict[str, Any]) -> None:
        original_append(self, row)
        poison.on = True  # epoch 1 trains and checkpoints; epoch 2 diverges

    monkeypatch.setattr(MetricsLog, "append", append_then_poison)
    spec = toy_spec(freeze=ONE_STAGE, cache=NO_CACHE,
                    output={"dir": str(tmp_path / "runs"), "name": "nan", "plots": False})
    with pytest.raises(RunError) as info:
        run_module.run_spec(spec, tmp_path / "nan.yaml", quiet=True)
    run_json = tmp_path / "runs" / "nan" / "run.json"
    failed = _strict(run_json.read_text())
    assert failed["status"] == "failed"
    assert failed["error"] == str(info.value)

    monkeypatch.setattr(MetricsLog, "append", original_append)
    poison.on = False
    run_module.run_spec(spec, tmp_path / "nan.yaml", quiet=True, resume=True)
    finished = _strict(run_json.read_text())
    assert finished["status"] == "finished" and "error" not in finished
