"""Reading labelled tables (CSV, TSV, JSON lines) with errors that name the file, line and column."""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftengine.data.sniff import SNIFF_BYTES, excerpt, listing, sniff
from ftengine.errors import DataError
from ftengine.spec.paths import is_package_path, resolve_path

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Table:
    """A parsed table.

    Attributes:
        path: the file.
        columns: column names (CSV header, or JSON keys in order of first appearance).
        rows: one dict per data row.
        lines: 1-based line number of each row in the file (what an editor shows).
        digest: sha256 of the file's bytes.
        where: the spec field naming the file, for messages (``data.train``).
    """

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]
    digest: str
    where: str = "data"


def locate(value: str, spec_dir: Path | None, where: str, *, want_dir: bool = False) -> Path:
    """Resolve a spec path and require that it exists and is a file (or, with ``want_dir``, a folder).

    Raises:
        DataError: ``<where>: no such file '<path>' (got '<value>'); fix the path (...)``, or a folder given
            where a file is expected (and the reverse).
    """
    try:
        path = resolve_path(value, spec_dir)
    except FileNotFoundError as exc:
        raise DataError(f"{where}: {exc} (got '{value}'); install it or fix the path") from exc
    if not path.exists():
        base = ("paths after pkg:<package>/ start inside the installed package" if is_package_path(value) else
                "relative paths start at the current folder" if spec_dir is None else
                "relative paths start at the spec file's folder")
        raise DataError(f"{where}: no such {'folder' if want_dir else 'file'} '{path}' (got '{value}'); "
                        f"fix the path ({base})")
    if want_dir and not path.is_dir():
        raise DataError(f"{where}: {path} is a file, expected a folder with one subfolder per class (got '{value}'); "
                        "point it at the folder")
    if not want_dir and path.is_dir():
        raise DataError(f"{where}: {path} is a folder, expected a file (got '{value}'); point it at the data file")
    return path


def table_format(path: Path, declared: str, where: str) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the declared format, or the extension when ``auto``."""
    by_ext = _FORMATS.get(path.suffix.lower())
    if declared == "jsonl":
        return "jsonl"
    if declared == "csv":
        return "tsv" if by_ext == "tsv" else "csv"
    if by_ext is None:
        raise DataError(f"{where}: cannot tell the format of {path} from its extension (got '{path.suffix}'); "
                        "set data.format: csv or jsonl")
    return by_ext


def decode(path: Path, raw: bytes, encoding: str, where: str, *, final: bool = True) -> str:
    """Decode file bytes; a bad byte is reported with its line number and a hint to set data.encoding.

    Args:
        final: ``raw`` is the whole file (False: a head cut anywhere, so a character may be cut in two).
    """
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(raw, final=final)
    except LookupError as exc:
        raise DataError(f"data.encoding: unknown encoding (got '{excerpt(encoding)}'); "
                        "use e.g. utf-8, latin-1 or cp1252") from exc
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{where}: {path} line {line}: byte 0x{raw[exc.start]:02x} is not valid {encoding} "
                        f"(got encoding '{encoding}'); set data.encoding to the file's encoding, e.g. latin-1") from exc
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the first column's name


def read_bytes(path: Path, where: str, limit: int | None = None) -> bytes:
    """The file's bytes (its first ``limit`` bytes when given).

    Raises:
        DataError: the file cannot be read (permissions, a device error).
    """
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as exc:
        raise DataError(f"{where}: cannot read {path} (got {type(exc).__name__}: {exc.strerror or exc}); "
                        "check that it is a readable file") from exc


def read_table(path: Path, where: str, *, fmt: str = "auto", encoding: str = "utf-8") -> Table:
    """Read a CSV/TSV (header row) or JSON-lines file.

    Args:
        path: an existing file.
        where: spec field for messages (``data.train``).
        fmt: ``auto`` (by extension), ``csv`` or ``jsonl``.
        encoding: text encoding.

    Raises:
        DataError: binary content, undecodable bytes, malformed rows (with line numbers), or no data rows.
    """
    return parse_table(path, read_bytes(path, where), where, fmt=fmt, encoding=encoding)


def parse_table(path: Path, raw: bytes, where: str, *, fmt: str = "auto", encoding: str = "utf-8",
                complete: bool = True) -> Table:
    """Parse a table from bytes: the whole file, or (``complete`` False) its head, up to its last full line.

    Raises:
        DataError: as for :func:`read_table` (a head with no data rows is not an error: its rows come later).
    """
    if (problem := sniff(raw[:SNIFF_BYTES], encoding, where)) is not None:
        raise DataError(f"{where}: {path} {problem}")
    text = decode(path, raw, encoding, where, final=complete)
    if not complete:
        text = text[:text.rfind("\n") + 1]  # the last line may be cut in two
    kind = table_format(path, fmt, where)
    columns, rows, lines = _read_jsonl(path, text, where) if kind == "jsonl" else \
        _read_csv(path, text, where, "\t" if kind == "tsv" else ",")
    if not rows and complete:
        raise DataError(f"{where}: {path} has no data rows (got {'a header only' if columns else 'an empty file'}); "
                        "add labelled rows or point at another file")
    return Table(path, columns, rows, lines, hashlib.sha256(raw).hexdigest(), where)


def _read_csv(path: Path, text: str, where: str, delimiter: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    header: list[str] = []
    try:
        for record in reader:
            if not header:
                header = [h.strip() for h in record]
                continue
            if not record or record == [""]:
                continue  # blank line
            if len(record) != len(header):
                shown = delimiter.replace("\t", "\\t")
                raise DataError(f"{where}: {path} line {reader.line_num}: expected {len(header)} fields "
                                f"({listing(header)}) (got {len(record)}); quote fields that contain '{shown}'")
            rows.append(dict(zip(header, record, strict=True)))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{where}: {path} line {reader.line_num}: cannot parse the row ({exc}); fix the quoting") from exc
    return header, rows, lines


def _read_jsonl(path: Path, text: str, where: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: {path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            "write one JSON object per line") from exc
        if not isinstance(record, dict):
            raise DataError(f"{where}: {path} line {number}: expected a JSON object (got {type(record).__name__}); "
                            'write one object per line, e.g. {"text": "...", "label": "..."}')
        columns.update(dict.fromkeys(record))
        rows.append(record)
        lines.append(number)
    return list(columns), rows, lines


def require_column(table: Table, column: str, field: str) -> None:
    """Raise a did-you-mean DataError when ``column`` is not in the table.

    Args:
        table: the table.
        column: the column the spec names.
        field: the spec field naming it (``data.text_column``).
    """
    if column in table.columns:
        return
    close = difflib.get_close_matches(column, table.columns, n=1, cutoff=0.5)
    if table.where.startswith("--"):  # a file named on the command line (predict, eval): the run's spec is fixed
        rename = f" (rename '{excerpt(close[0])}'?)" if close else ""
        raise DataError(f"{table.where}: {table.path} has no column '{column}' (columns: {listing(table.columns)}); "
                        f"the run reads '{column}' ({field} in its spec): give the file a column of that name{rename}")
    hint = f"did you mean '{excerpt(close[0])}'?" if close else f"set {field} to one of them"
    raise DataError(f"{field}: {table.path} has no column '{column}' (columns: {listing(table.columns)}); {hint}")


def cell(table: Table, i: int, column: str, where: str, *, required: bool = True) -> str | None:
    """Row ``i``'s value in ``column`` as a string (JSON numbers become their text).

    Raises:
        DataError: the value is missing or empty while ``required``, or is not text/number.
    """
    value = table.rows[i].get(column)
    if isinstance(value, (bool, int, float)):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}: {table.path} line {table.lines[i]}, column '{column}': expected text "
                        f"(got {type(value).__name__}); store a string")
    if required and (value is None or value.strip() == ""):
        raise DataError(f"{where}: {table.path} line {table.lines[i]}, column '{column}': empty value "
                        "(got nothing); fill it in or remove the row")
    return value
