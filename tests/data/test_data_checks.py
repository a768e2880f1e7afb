"""check_data_files (what `ftengine validate` reports about data): the messages training gives, from file heads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_helpers import make_folder, text_rows, write_csv

from ftengine.data import build_data
from ftengine.data.checks import HEAD_BYTES, check_data_files
from ftengine.errors import DataError
from ftengine.spec import DigitsDataSpec, ImageCsvDataSpec, ImageFolderDataSpec, TextDataSpec


def _training_message(spec: Any, backbone: Any, root: Path) -> str:
    with pytest.raises(DataError) as err:
        build_data(spec, backbone, root, seed=0)
    return str(err.value)


def test_good_files_and_built_in_data_have_no_problems(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", text_rows(30))
    assert check_data_files(TextDataSpec(train="train.csv", validation="train.csv"), tmp_path) == []
    assert check_data_files(DigitsDataSpec(), tmp_path) == []


@pytest.mark.parametrize("case", ["missing column", "no rows", "empty file", "binary", "folder", "missing",
                                  "empty label"])
def test_text_problems_match_training(tmp_path: Path, text_backbone: Any, case: str) -> None:
    path = tmp_path / "train.csv"
    kw: dict[str, Any] = {}
    if case == "missing column":
        write_csv(path, [{"body": r["text"], "label": r["label"]} for r in text_rows(30)])
    elif case == "no rows":
        path.write_text("text,label\n")
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "binary":
        path.write_bytes(b"\x1b[2J\x00\x00\x01\x02" * 64)
    elif case == "folder":
        path.mkdir()
    elif case == "missing":
        kw["validation"] = "nope.csv"
        write_csv(path, text_rows(30))
    else:
        path.write_text("text,label\nfine,a\nno label,\n")
    spec = TextDataSpec(train="train.csv", **kw)
    problems = check_data_files(spec, tmp_path)
    assert problems == [_training_message(spec, text_backbone, tmp_path)]
    assert "\x1b" not in problems[0] and "\x00" not in problems[0]


def test_every_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\n")
    (tmp_path / "valid.csv").write_text("body,label\nx,a\n")
    problems = check_data_files(TextDataSpec(train="train.csv", validation="valid.csv", test="t.csv"), tmp_path)
    assert [p.split(":")[0] for p in problems] == ["data.train", "data.text_column", "data.test"]


def test_only_the_head_is_read(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    write_csv(path, text_rows(3000))
    assert path.stat().st_size > HEAD_BYTES
    with open(path, "a") as f:
        f.write("a,b,c,d\n")  # a bad row past the head: training's problem, not validate's
    assert check_data_files(TextDataSpec(train="train.csv"), tmp_path) == []


def test_image_csv_columns_and_paths(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    rows = [{"file": f"imgs/{c}/{i}.png", "label": c} for c in "ab" for i in range(2)]
    write_csv(tmp_path / "train.csv", rows)
    spec = ImageCsvDataSpec(train="train.csv")
    assert check_data_files(spec, tmp_path) == [_training_message(spec, image_backbone, tmp_path)]
    write_csv(tmp_path / "train.csv", [{"path": "imgs/a/9.png", "label": "a"}, *[{"path": r["file"], "label": r["label"]}
                                                                                for r in rows]])
    problems = check_data_files(spec, tmp_path)
    assert problems == [_training_message(spec, image_backbone, tmp_path)]
    assert "image not found" in problems[0]


def test_image_folder_layout(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 2})
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "flat").mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    for train in ("imgs", "flat", "file.png", "missing"):
        spec = ImageFolderDataSpec(train=train)
        assert check_data_files(spec, tmp_path) == [_training_message(spec, image_backbone, tmp_path)]
    assert check_data_files(ImageFolderDataSpec(train="file.png"), tmp_path) == [
        f"data.train: {tmp_path / 'file.png'} is a file, expected a folder with one subfolder per class "
        "(got 'file.png'); point it at the folder"]
