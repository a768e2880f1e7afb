"""Binary input and hostile content: messages name the problem and never print raw control bytes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from data_helpers import text_rows, write_csv

from ftengine.data import build_data, load_file
from ftengine.data.sniff import excerpt, listing
from ftengine.data.tables import read_table
from ftengine.errors import DataError
from ftengine.spec import TextDataSpec

# What a terminal would act on: ESC starts control sequences, NUL and BEL are not text.
RAW_CONTROL = ("\x1b", "\x00", "\x07")


def _clean(message: str) -> bool:
    return not any(ch in message for ch in RAW_CONTROL)


def test_excerpt_escapes_control_characters_and_truncates() -> None:
    assert excerpt("a\x1b[2Jb\x00c") == "a\\x1b[2Jb\\x00c"
    assert excerpt("né ✓") == "né ✓"  # printable non-ASCII stays readable
    assert excerpt("x" * 100, 10) == "xxxxxxxxxx... (+90 chars)"
    assert listing(map(str, range(12)), 3) == "0, 1, 2 (+9 more)"


def test_binary_file_is_named_binary_not_an_encoding_problem(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x1b[31m" + bytes(range(256)) * 4)
    for encoding in ("utf-8", "latin-1"):
        with pytest.raises(DataError) as err:
            read_table(path, "data.train", encoding=encoding)
        assert str(err.value) == (f"data.train: {path} looks like a binary file, not CSV/JSONL (got a NUL byte at "
                                  "offset 7); point data.train at a CSV, TSV or JSON-lines file")


def test_known_formats_are_named(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(gzip.compress(b"text,label\nhi,a\n"))
    with pytest.raises(DataError, match=r"looks like a binary file, not CSV/JSONL \(got gzip-compressed data\); "
                                        r"point data.train at a CSV, TSV or JSON-lines file, or convert it to one$"):
        read_table(path, "data.train")


def test_utf16_text_gets_the_encoding_hint_and_reads_when_declared(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\nhé,a\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"looks like UTF-16 text \(got a UTF-16 byte-order mark with data.encoding "
                                        r"'utf-8'\); set data.encoding: utf-16$"):
        read_table(path, "data.train")
    assert read_table(path, "data.train", encoding="utf-16").rows == [{"text": "hé", "label": "a"}]


def test_control_bytes_in_labels_and_columns_are_escaped(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(30))
    write_csv(tmp_path / "valid.csv", [{"text": "x", "label": "\x1b]0;pwned\x07" + "z" * 200}])
    with pytest.raises(DataError) as err:
        build_data(TextDataSpec(train="train.csv", validation="valid.csv"), text_backbone, tmp_path, seed=0)
    assert _clean(str(err.value)) and "label '\\x1b]0;pwned\\x07zzzz" in str(err.value)
    assert len(str(err.value)) < 400
    (tmp_path / "odd.csv").write_text("te\x1bxt,label\nhi,a\n")
    with pytest.raises(DataError) as err:
        build_data(TextDataSpec(train="odd.csv"), text_backbone, tmp_path, seed=0)
    assert "(columns: te\\x1bxt, label)" in str(err.value) and _clean(str(err.value))


def test_folder_given_for_a_text_file(tmp_path: Path, text_backbone: Any) -> None:
    (tmp_path / "train.csv").mkdir()
    with pytest.raises(DataError) as err:
        build_data(TextDataSpec(train="train.csv"), text_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.train: {tmp_path / 'train.csv'} is a folder, expected a file (got 'train.csv'); "
                              "point it at the data file")
    with pytest.raises(DataError, match=r"^--input: .* is a folder, expected a file \(got '.*train.csv'\)"):
        load_file(TextDataSpec(train="x.csv"), text_backbone, tmp_path / "train.csv", ["a"], where="--input")
