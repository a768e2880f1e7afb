"""Cheap checks of the data files a spec names, for ``ftengine validate`` (no tokenizer, no weights).

Each file is read only up to :data:`HEAD_BYTES`: enough for its header and first rows. The checks raise the
same messages training would (they call the same readers), so a file that passes here fails in training only
for problems further down (a bad row past the head, an unseen label).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ftengine.data.images import IMAGE_EXTENSIONS, class_folders, csv_table_rows, no_images
from ftengine.data.tables import locate, parse_table, read_bytes
from ftengine.data.targets import check_targets
from ftengine.data.text import table_rows
from ftengine.errors import DataError

HEAD_BYTES = 64 * 1024
"""Bytes read per data file (a header and a few hundred short rows)."""
HEAD_ROWS = 20
"""Rows whose cells are checked (labels present, image paths that exist)."""


def check_data_files(data: Any, spec_dir: Path | None) -> list[str]:
    """Problems with the data files of a spec's data section, one line each (empty: none found).

    Text and image-CSV files: exists and is a file, not binary, decodes, parses, has data rows, has the
    text/label/path columns; the first :data:`HEAD_ROWS` rows pass training's row reader (labels, images) and
    target checks (regression numbers, multilabel labels against `data.labels`). Image
    folders: exists and is a folder, has class subfolders, each with an image.

    Args:
        data: the spec's data section.
        spec_dir: the spec file's folder (relative paths start there).
    """
    if data.kind not in ("text", "image_csv", "image_folder"):
        return []  # built-in data sets read no files
    problems = []
    for name in ("train", "validation", "test"):
        if (value := getattr(data, name, None)) is None:
            continue
        where = f"data.{name}"
        try:
            path = locate(value, spec_dir, where, want_dir=data.kind == "image_folder")
            if data.kind == "image_folder":
                _check_folder(path, where)
            else:
                _check_table(data, path, where)
        except DataError as err:
            problems += err.problems
    return problems


def _check_table(data: Any, path: Path, where: str) -> None:
    head = read_bytes(path, where, HEAD_BYTES + 1)
    complete = len(head) <= HEAD_BYTES
    table = parse_table(path, head[:HEAD_BYTES], where, fmt=getattr(data, "format", "auto"), encoding=data.encoding,
                        complete=complete)
    if not table.rows:
        return  # a header longer than the head: nothing more to check cheaply
    # The first rows through training's own row reader: its columns, labels and image paths, its messages.
    first = replace(table, rows=table.rows[:HEAD_ROWS], lines=table.lines[:HEAD_ROWS])
    rows = table_rows(data, first) if data.kind == "text" else csv_table_rows(data, first)
    check_targets(data, rows, training_file=where == "data.train")


def _check_folder(root: Path, where: str) -> None:
    for folder in class_folders(root, where):
        # Stops at the first image: cheap however many there are.
        if next((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), None) is None:
            raise no_images(folder, where)
