"""Multilabel from 0/1 columns, digits as label sets, and validate's target checks (training's own messages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from data_helpers import make_folder, write_csv
from pydantic import ValidationError

from ftengine.data import build_data
from ftengine.data.checks import check_data_files
from ftengine.errors import DataError
from ftengine.spec import DigitsDataSpec, ImageCsvDataSpec, TextDataSpec

FLAGS = [{"text": f"row {i}", "sports": str(i % 2), "politics": str(int(i % 3 == 0)), "art": "0"}
         for i in range(30)]


def _message(spec: Any, backbone: Any, root: Path) -> str:
    with pytest.raises(DataError) as err:
        build_data(spec, backbone, root, seed=0)
    return str(err.value)


def _targets(bundle: Any) -> list[list[float]]:
    return [bundle.train[i]["label"] for i in range(len(bundle.train))]


def test_label_columns_equal_the_delimited_column(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "flags.csv", FLAGS)
    # The same label sets written the other way: the names of the columns holding 1, '|'-joined.
    joined = [{"text": r["text"], "label": "|".join(c for c in ("sports", "politics", "art") if r[c] == "1")}
              for r in FLAGS]
    write_csv(tmp_path / "joined.csv", joined)
    split = {"validation": 0.2, "seed": 3}
    flags = build_data(TextDataSpec(train="flags.csv", task="multilabel", label_columns=["sports", "politics", "art"],
                                    split=split), text_backbone, tmp_path, seed=0)
    delimited = build_data(TextDataSpec(train="joined.csv", task="multilabel", labels=["sports", "politics", "art"],
                                        split=split), text_backbone, tmp_path, seed=0)
    assert flags.labels == ["sports", "politics", "art"]  # the columns' order, not sorted
    assert _targets(flags) == _targets(delimited)
    whole = build_data(TextDataSpec(train="flags.csv", task="multilabel", label_columns=["art", "sports"],
                                    split={"validation": 0.0}), text_backbone, tmp_path, seed=0)
    assert sorted(_targets(whole)) == sorted([float(r["art"]), float(r["sports"])] for r in FLAGS)


def test_label_columns_on_an_image_csv(tmp_path: Path, image_backbone: Any) -> None:
    images = make_folder(tmp_path / "img", {"x": 6})
    rows = [{"path": str(p.relative_to(tmp_path)), "red": str(i % 2), "round": "true" if i < 3 else "false"}
            for i, p in enumerate(sorted(images))]
    write_csv(tmp_path / "images.csv", rows)
    bundle = build_data(ImageCsvDataSpec(train="images.csv", task="multilabel", label_columns=["red", "round"],
                                         split={"validation": 0.0}), image_backbone, tmp_path, seed=0)
    assert bundle.labels == ["red", "round"]
    assert sorted(_targets(bundle)) == sorted([float(i % 2), float(i < 3)] for i in range(6))


def test_a_flag_that_is_not_0_or_1_is_reported_by_validate_as_by_training(tmp_path: Path,
                                                                           text_backbone: Any) -> None:
    rows = [dict(r) for r in FLAGS]
    rows[4]["politics"] = "yes"
    write_csv(tmp_path / "train.csv", rows)
    spec = TextDataSpec(train="train.csv", task="multilabel", label_columns=["sports", "politics"])
    message = _message(spec, text_backbone, tmp_path)
    assert message.startswith("data.train: ") and "line 6, column 'politics': not 0 or 1 (got 'yes'); write 1" in message
    assert check_data_files(spec, tmp_path) == [message]


def test_a_missing_flag_column_names_the_field(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", FLAGS)
    spec = TextDataSpec(train="train.csv", task="multilabel", label_columns=["sports", "polítics"])
    [problem] = check_data_files(spec, tmp_path)
    assert problem.startswith("data.label_columns: ") and "no column 'polítics'" in problem
    assert "did you mean 'politics'?" in problem


@pytest.mark.parametrize(("fields", "needle"), [
    ({"label_columns": ["a", "b"]}, "label_columns are the 0/1 columns of a multilabel task (got task 'classification')"),
    ({"task": "multilabel", "label_columns": ["a", "a"]}, "label_columns name a column twice (got a)"),
    ({"task": "multilabel", "label_columns": ["a|b"]}, "free of label_separator '|' (got 'a|b')"),
    ({"task": "multilabel", "label_columns": ["a"], "labels": ["a"]}, "label_columns already give the label order"),
])
def test_label_columns_spec_errors(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        TextDataSpec(train="t.csv", **fields)
    assert needle in str(err.value)


def test_digit_tags(image_backbone: Any) -> None:
    from sklearn.datasets import load_digits

    bundle = build_data(DigitsDataSpec(task="multilabel", split={"validation": 0.2}), image_backbone, None, seed=0)
    assert bundle.labels == ["even", "five_or_more", "prime"]
    assert bundle.task.kind == "multilabel" and bundle.task.loss == "bce"
    digits = load_digits()
    # Each training example's tags against the arithmetic of its digit (sklearn's target).
    for i in range(0, len(bundle.train), 97):
        example = bundle.train[i]
        digit = int(digits.target[bundle.train.items[i]])
        assert example["label"] == [float(digit % 2 == 0), float(digit >= 5), float(digit in (2, 3, 5, 7))]
    assert bundle.collate([bundle.train[0]])["labels"].dtype == torch.float32  # multi-hot rows for BCE


def test_digit_tags_rule_out_balance() -> None:
    with pytest.raises(ValidationError) as err:
        DigitsDataSpec(task="multilabel", balance="sampler")
    assert "balance applies to classification (got balance 'sampler' with task 'multilabel')" in str(err.value)


@pytest.mark.parametrize("file", ["train", "validation"])
def test_a_non_numeric_target_is_reported_by_validate_as_by_training(tmp_path: Path, text_backbone: Any,
                                                                     file: str) -> None:
    good = [{"text": f"t{i}", "score": str(i / 10)} for i in range(20)]
    bad = [dict(r) for r in good]
    bad[3]["score"] = "n/a"
    write_csv(tmp_path / "good.csv", good)
    write_csv(tmp_path / "bad.csv", bad)
    names = {"train": "bad.csv", "validation": "good.csv"} if file == "train" else \
        {"train": "good.csv", "validation": "bad.csv"}
    spec = TextDataSpec(task="regression", label_column="score", **names)
    message = _message(spec, text_backbone, tmp_path)
    assert message.startswith(f"data.{file}: ") and "not a finite number (got 'n/a')" in message
    assert check_data_files(spec, tmp_path) == [message]


def test_blank_targets_are_left_out_of_the_training_file_only(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "score": "" if i == 2 else str(i)} for i in range(20)]
    write_csv(tmp_path / "t.csv", rows)
    assert check_data_files(TextDataSpec(train="t.csv", task="regression", label_column="score"), tmp_path) == []
    [problem] = check_data_files(TextDataSpec(train="t.csv", validation="t.csv", task="regression",
                                              label_column="score"), tmp_path)
    assert problem.startswith("data.validation: ") and "not a finite number (got '')" in problem


@pytest.mark.parametrize("file", ["train", "validation"])
def test_a_label_outside_data_labels_is_reported_by_validate_as_by_training(tmp_path: Path, text_backbone: Any,
                                                                            file: str) -> None:
    good = [{"text": f"t{i}", "label": ["a", "b|a", ""][i % 3]} for i in range(20)]
    bad = [dict(r) for r in good]
    bad[5]["label"] = "a|c"
    write_csv(tmp_path / "good.csv", good)
    write_csv(tmp_path / "bad.csv", bad)
    names = {"train": "bad.csv", "validation": "good.csv"} if file == "train" else \
        {"train": "good.csv", "validation": "bad.csv"}
    spec = TextDataSpec(task="multilabel", labels=["a", "b"], **names)
    message = _message(spec, text_backbone, tmp_path)
    assert ("has labels not in data.labels (got c)" if file == "train" else "label 'c' does not occur") in message
    assert check_data_files(spec, tmp_path) == [message]
