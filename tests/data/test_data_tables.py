"""Reading CSV/TSV/JSONL tables and the text of every data error a user can cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import write_csv, write_jsonl

from ftengine.data.tables import cell, locate, read_table, require_column
from ftengine.errors import DataError


def test_csv_tsv_jsonl_read_the_same_rows(tmp_path: Path) -> None:
    rows = [{"text": "a, quoted \"one\"", "label": "x"}, {"text": "two", "label": "y"}]
    tables = [read_table(write_csv(tmp_path / "a.csv", rows), "data.train"),
              read_table(write_csv(tmp_path / "a.tsv", rows, delimiter="\t"), "data.train"),
              read_table(write_jsonl(tmp_path / "a.jsonl", rows), "data.train")]
    for table in tables:
        assert table.columns == ["text", "label"]
        assert table.rows == rows
        assert table.lines == ([1, 2] if table.path.suffix == ".jsonl" else [2, 3])  # CSV line 1 is the header


def test_blank_lines_are_skipped_and_lines_count_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nfirst,a\n\nsecond,b\n")
    table = read_table(path, "data.train")
    assert [r["text"] for r in table.rows] == ["first", "second"]
    assert table.lines == [2, 4]


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext,label\nhi,a\n".encode())
    assert read_table(path, "data.train").columns == ["text", "label"]


def test_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        locate("nope/train.csv", tmp_path, "data.train")
    assert str(err.value) == (f"data.train: no such file '{tmp_path / 'nope/train.csv'}' (got 'nope/train.csv'); "
                              "fix the path (relative paths start at the spec file's folder)")


def test_missing_package_message() -> None:
    with pytest.raises(DataError, match=r"^data.train: package 'no_such_pkg_xyz' is not installed .*got 'pkg:no_such"):
        locate("pkg:no_such_pkg_xyz/a.csv", None, "data.train")


def test_missing_column_lists_columns_and_suggests(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "t.csv", [{"sentiment": "a", "text": "b"}]), "data.train")
    with pytest.raises(DataError) as err:
        require_column(table, "sentimnet", "data.label_column")
    assert str(err.value) == (f"data.label_column: {tmp_path / 't.csv'} has no column 'sentimnet' "
                              "(columns: sentiment, text); did you mean 'sentiment'?")


def test_row_with_extra_field_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nok,a\nnot, ok,b\n")
    with pytest.raises(DataError) as err:
        read_table(path, "data.train")
    assert str(err.value) == (f"data.train: {path} line 3: expected 2 fields (text, label) (got 3); "
                              "quote fields that contain ','")


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", label: "y"}\n')
    with pytest.raises(DataError, match=r"line 2: not valid JSON \(Expecting property name .*\); write one JSON"):
        read_table(path, "data.train")
    path.write_text('["a", "x"]\n')
    with pytest.raises(DataError, match=r"line 1: expected a JSON object \(got list\)"):
        read_table(path, "data.train")


def test_wrong_encoding_names_line_and_suggests_latin1(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\nfine,a\ncaf\u00e9,b\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_table(path, "data.train")
    assert str(err.value) == (f"data.train: {path} line 3: byte 0xe9 is not valid utf-8 (got encoding 'utf-8'); "
                              "set data.encoding to the file's encoding, e.g. latin-1")
    assert read_table(path, "data.train", encoding="latin-1").rows[1]["text"] == "caf\u00e9"


def test_unknown_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"text": "a", "label": "b"}])
    with pytest.raises(DataError, match=r"^data.encoding: unknown encoding \(got 'klingon'\)"):
        read_table(path, "data.train", encoding="klingon")


def test_header_only_and_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match=r"has no data rows \(got a header only\)"):
        read_table(path, "data.train")
    other = tmp_path / "t.dat"
    other.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match=r"cannot tell the format .* \(got '.dat'\); set data.format: csv or jsonl"):
        read_table(other, "data.train")
    assert read_table(other, "data.train", fmt="csv").rows == [{"text": "a", "label": "b"}]


def test_empty_label_cell_names_line_and_column(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "t.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": " "}]),
                       "data.train")
    with pytest.raises(DataError) as err:
        cell(table, 1, "label", "data.train")
    assert str(err.value) == (f"data.train: {tmp_path / 't.csv'} line 3, column 'label': empty value (got nothing); "
                              "fill it in or remove the row")


def test_json_numbers_and_booleans_become_label_text(tmp_path: Path) -> None:
    table = read_table(write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": 3}, {"text": "b", "label": True}]),
                       "data.train")
    assert [cell(table, i, "label", "data.train") for i in range(2)] == ["3", "true"]
