"""`ftengine eval` and `ftengine predict` on a finished run (the tiny-BERT reference run)."""

from __future__ import annotations

import csv
import json

import pytest

from ftengine.cli import main


@pytest.mark.slow
def test_eval_reproduces_the_runs_validation_numbers(reference, capsys):
    final = json.loads((reference / "run.json").read_text())["final"]  # no test split: eval scores validation
    assert main(["eval", str(reference), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "validation" and report["num_examples"] == 80
    assert report["accuracy"] == final["val_accuracy"] and report["macro_f1"] == final["val_macro_f1"]
    assert report["loss"] == pytest.approx(final["val_loss"], rel=1e-6)


@pytest.mark.slow
def test_eval_on_another_file_and_predict(reference, tmp_path, capsys):
    labelled = tmp_path / "more.csv"
    with open(labelled, "w", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(["sentiment", "text"])
        w.writerows([["positive", "what a lovely day, thank you all"], ["negative", "worst service ever"],
                     ["neutral", "the train leaves at noon"]])
    assert main(["eval", str(reference), "--data", str(labelled)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{labelled}: 3 examples\naccuracy     ")
    unlabelled = tmp_path / "new.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("great!", "awful", "ok then")))
    target = tmp_path / "pred.jsonl"
    assert main(["predict", str(reference), "--input", str(unlabelled), "--output", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 3 predictions to {target}"
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["great!", "awful", "ok then"]
    for r in rows:
        probs = {k[2:]: v for k, v in r.items() if k.startswith("p_")}
        assert set(probs) == {"negative", "neutral", "positive"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == max(probs, key=probs.get) and r["confidence"] == probs[r["label"]]


def test_eval_of_something_that_is_not_a_run(tmp_path, capsys):
    printed = "pass the folder a finished `ftengine run` printed (its last line: run directory: ...)"
    assert main(["eval", str(tmp_path / "nothing")]) == 2  # a mistyped folder is the user's to fix: exit 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nothing'}: no such folder; {printed}"
    assert main(["eval", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path}: not a run directory (no spec.resolved.yaml); {printed}"
    (tmp_path / "spec.resolved.yaml").write_text("{}\n")  # a run that stopped before its final model
    assert main(["eval", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{tmp_path}: the run has not finished (no model/model.safetensors); finish it with "
        f"`ftengine run --resume {tmp_path}`, or {printed}")
