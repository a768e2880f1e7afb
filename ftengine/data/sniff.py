"""Safe quoting of file content in messages, and telling binary files from text before parsing them.

Data files come from anywhere: a message that quotes a label, a column name or a path read from a row
must never write raw control bytes (ESC, NUL) to the user's terminal, nor a whole paragraph.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

SNIFF_BYTES = 8192
"""How much of a file's start decides whether it is binary (what git looks at, too)."""

# Leading bytes of formats people hand over by mistake, and what they are.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "a zip archive or an .xlsx/.docx file"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x80\x02", "a Python pickle"),
    (b"\xd0\xcf\x11\xe0", "an old .xls/.doc Office file"),
)
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# C0 control bytes other than tab, newlines, form feed; DEL. Text files hold almost none of them.
_CONTROL = frozenset(range(0x00, 0x09)) | frozenset(range(0x0E, 0x20)) | {0x7F}


def excerpt(value: object, limit: int = 40) -> str:
    """``value`` as text for a message: control and other unprintable characters escaped, at most ``limit`` chars.

    >>> excerpt("a\\x1b[2Jb\\x00")
    'a\\\\x1b[2Jb\\\\x00'
    """
    out: list[str] = []
    size = 0
    text = str(value)
    for i, ch in enumerate(text):
        piece = ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        if size + len(piece) > limit:
            return "".join(out) + f"... (+{len(text) - i} chars)"
        out.append(piece)
        size += len(piece)
    return "".join(out)


def listing(values: Iterable[object], limit: int = 10) -> str:
    """Comma-separated excerpts of at most ``limit`` values, then ``(+N more)``."""
    items = list(values)
    shown = ", ".join(excerpt(v) for v in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def sniff(head: bytes, encoding: str, where: str) -> str | None:
    """What is wrong with a data file whose first bytes are ``head``, or None when it may well be text.

    Binary files (by a known leading signature, a NUL byte, or >10% control bytes) and UTF-16/32 text read
    with a narrow encoding are caught here, before a decoding error suggests the wrong fix.

    Args:
        head: the file's first bytes (:data:`SNIFF_BYTES` are enough).
        encoding: the declared text encoding (UTF-16/32 text legitimately holds NUL bytes).
        where: the spec field naming the file, for the fix.

    Returns:
        The message after ``<where>: <file> ``, e.g. ``looks like a binary file, not CSV/JSONL (got a NUL byte
        at offset 4); point data.train at a CSV, TSV or JSON-lines file``.
    """
    head = head[:SNIFF_BYTES]
    fix = f"point {where} at a CSV, TSV or JSON-lines file"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return f"looks like a binary file, not CSV/JSONL (got {name}); {fix}, or convert it to one"
    wide = _is_wide(encoding)
    if not wide:
        for bom, name in _WIDE_BOMS:
            if head.startswith(bom):
                return (f"looks like {name.upper()} text (got a {name.upper()} byte-order mark with data.encoding "
                        f"'{excerpt(encoding)}'); set data.encoding: {name}")
    if not head or wide:
        return None
    if (nul := head.find(b"\x00")) >= 0:
        return f"looks like a binary file, not CSV/JSONL (got a NUL byte at offset {nul}); {fix}"
    control = sum(b in _CONTROL for b in head)
    if control * 10 > len(head):
        return (f"looks like a binary file, not CSV/JSONL (got {control} control bytes in its first {len(head)}); "
                f"{fix}")
    return None


def _is_wide(encoding: str) -> bool:
    """UTF-16/32 (NUL bytes are part of such text); False for unknown names (reported when decoding)."""
    try:
        return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    except LookupError:
        return False
