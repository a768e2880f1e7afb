"""Data a classifier cannot learn from (one class, classes without training rows) and quiet quality problems
(single-row evaluation splits, empty texts): errors for what makes training meaningless, notes for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_helpers import text_rows, write_csv

from ftengine.data import build_data
from ftengine.data.assemble import check_classes
from ftengine.data.splits import Rows
from ftengine.errors import DataError
from ftengine.spec import TextDataSpec


def spec(**kw: Any) -> TextDataSpec:
    return TextDataSpec(**{"train": "train.csv", **kw})


def test_one_class_training_data_is_an_error(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(40, labels=("pos",)))
    with pytest.raises(DataError) as err:
        build_data(spec(), text_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.train: {tmp_path / 'train.csv'}: the training split has only one class, 'pos' "
                              "(got 36 rows, all 'pos'); a classifier needs at least 2 classes: add rows with other labels")


def test_one_class_even_when_data_labels_lists_two(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(40, labels=("pos",)))
    with pytest.raises(DataError, match=r"^data.train: .*train.csv: the training split has only one class, 'pos'"):
        build_data(spec(labels=["neg", "pos"]), text_backbone, tmp_path, seed=0)


def test_fewer_training_rows_than_classes_is_an_error(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(4, labels=("a", "b")))
    with pytest.raises(DataError) as err:
        build_data(spec(labels=["a", "b", "c", "d", "e"], split={"validation": 0.0}), text_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.train: {tmp_path / 'train.csv'}: 3 of 5 classes have no training row (got 4 "
                              "training rows; without any: c, d, e); every class needs training rows: add some, or list "
                              "only trained classes in data.labels")


def test_a_class_lost_to_an_unstratified_split_is_an_error() -> None:
    # Hand-made splits: class 'c' went entirely to validation.
    train = Rows([("x",)] * 4, ["a", "b", "a", "b"], [2, 3, 4, 5], "t.csv", "data.train")
    rows = {"train": train, "validation": Rows([("y",)] * 2, ["c", "c"], [6, 7], "t.csv", "data.train")}
    with pytest.raises(DataError, match=r"without any: c\); every class needs training rows: add some, or use more "
                                        r"rows, or data.split.stratify: true"):
        check_classes(rows, {"train": [0, 1, 0, 1], "validation": [2, 2]}, ["a", "b", "c"], in_file={"a", "b", "c"})


def test_single_row_validation_split_is_a_note(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(10))
    write_csv(tmp_path / "valid.csv", text_rows(1))
    split_off = build_data(spec(), text_backbone, tmp_path, seed=0)  # 10 rows x 0.1 = 1 validation row
    given = build_data(spec(validation="valid.csv"), text_backbone, tmp_path, seed=0)
    tail = "the validation split has a single row, so its accuracy is 0 or 1 and says little; give it more rows"
    assert split_off.stats["notes"] == [f"data.split.validation: {tail}"]
    assert given.stats["notes"] == [f"data.validation: {tail}"]
    assert split_off.describe().splitlines()[1:] == [f"note: data.split.validation: {tail}"]
    assert len(build_data(spec(), text_backbone, tmp_path, seed=0).validation) == 1  # a note, not an error


def _with_blanks(tmp_path: Path) -> Path:
    rows = text_rows(30)
    for i in (3, 10, 17):  # file lines 5, 12, 19 (after the header)
        rows[i]["text"] = ["", "   ", "\t"][i % 3]
    return write_csv(tmp_path / "train.csv", rows)


def test_empty_texts_are_counted_and_kept_by_default(tmp_path: Path, text_backbone: Any) -> None:
    path = _with_blanks(tmp_path)
    data = build_data(spec(), text_backbone, tmp_path, seed=0)
    assert data.stats["notes"] == [f"data.train: 3 of 30 rows of {path} have empty or whitespace-only text (lines 5, "
                                   "12, 19); trained on as they are: set data.empty_text: drop to leave them out"]
    assert len(data.train) + len(data.validation) == 30


def test_empty_texts_dropped_or_refused(tmp_path: Path, text_backbone: Any) -> None:
    path = _with_blanks(tmp_path)
    kept = build_data(spec(), text_backbone, tmp_path, seed=0)
    dropped = build_data(spec(empty_text="drop"), text_backbone, tmp_path, seed=0)
    assert len(dropped.train) + len(dropped.validation) == 27
    assert all(text.strip() for text, _ in dropped.train.texts + dropped.validation.texts)
    assert dropped.stats["notes"] == [f"data.train: 3 of 30 rows of {path} have empty or whitespace-only text; "
                                      "dropped them (lines 5, 12, 19)"]
    assert dropped.fingerprint() != kept.fingerprint()
    with pytest.raises(DataError) as err:
        build_data(spec(empty_text="error"), text_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.train: 3 of 30 rows of {path} have empty or whitespace-only text (got lines 5, "
                              "12, 19); fill them in, remove them, or set data.empty_text: drop")


def test_keep_and_error_leave_the_fingerprint_of_clean_data_alone(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(30))
    prints = {mode: build_data(spec(empty_text=mode), text_backbone, tmp_path, seed=0).fingerprint()
              for mode in ("keep", "error")}
    assert prints["keep"] == prints["error"]  # runs and caches made before the option keep their fingerprint
