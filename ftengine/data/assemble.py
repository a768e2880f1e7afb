"""From rows read off files to labelled splits: limit, label map, split, class balance.

Shared by every data kind; the kind-specific builders only read rows and turn items into examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ftengine.data import splits as S
from ftengine.data import targets as T
from ftengine.data.sniff import excerpt, listing
from ftengine.data.splits import Rows
from ftengine.errors import DataError
from ftengine.spec.data import SplitSpec


@dataclass
class Splits:
    """Labelled splits.

    Attributes:
        labels: class names (position = class id).
        rows: ``train`` and, when present, ``validation`` / ``test`` rows.
        ids: label ids per split (same order as ``rows``).
        settings: what decided the splits (for the fingerprint).
        notes: things worth a look that do not stop training (one line each).
    """

    labels: list[str]
    rows: dict[str, Rows]
    ids: dict[str, list[int]]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def make_splits(train: Rows, validation: Rows | None, test: Rows | None, *, split: SplitSpec,
                limit: int | None, explicit: list[str] | None, task: str = "classification", separator: str = "|",
                column: str = "label") -> Splits:
    """Apply ``limit`` to the training rows, fix the label order, and split off what no file gives.

    Args:
        train: rows of the training file.
        validation: rows of the validation file, or None to split them off ``train`` (``split.validation``).
        test: rows of the test file, or None to split them off ``train`` (``split.test``).
        split: fractions, seed, stratification.
        limit: seeded subset of the training rows (before splitting).
        explicit: the spec's label order, or None for sorted training labels.
        task: ``classification``, ``multilabel`` (``ids`` hold multi-hot rows) or ``regression`` (``ids`` hold
            numbers; ``labels`` is ``[column]``); the last two split without stratification.
        separator: multilabel: what joins one row's labels.
        column: regression: the target column (the one "label" of the head).

    Raises:
        DataError: unknown or unseen labels, empty splits, or a training split no classifier can learn from
            (see :func:`check_classes`).
    """
    train = train.select(S.subset(len(train.items), limit, split.seed))
    if task != "classification":
        return _target_splits(train, validation, test, split=split, limit=limit, explicit=explicit, task=task,
                              separator=separator, column=column)
    labels = S.label_list(train, explicit)
    train_ids = S.encode(train, labels)
    parts = S.split_indices(train_ids, split, validation=validation is None, test=test is None, source=str(train.source))
    rows: dict[str, Rows] = {"train": train.select(parts["train"])}
    ids: dict[str, list[int]] = {"train": [train_ids[i] for i in parts["train"]]}
    for name, given in (("validation", validation), ("test", test)):
        if given is not None:
            rows[name], ids[name] = given, S.encode(given, labels)
        elif parts[name]:
            rows[name], ids[name] = train.select(parts[name]), [train_ids[i] for i in parts[name]]
    for name, part in rows.items():
        if not part.items:
            raise DataError(f"{part.where}: the {name} split is empty (got no rows from {part.source}); add rows")
    notes = check_classes(rows, ids, labels, in_file=set(train.labels))
    # Content digests (not paths) identify the files: a moved file keeps its cached activations.
    settings = {"split": split.model_dump(), "limit": limit, "labels": labels, "splits": sorted(rows)}
    return Splits(labels, rows, ids, settings, notes)


def _target_splits(train: Rows, validation: Rows | None, test: Rows | None, *, split: SplitSpec, limit: int | None,
                   explicit: list[str] | None, task: str, separator: str, column: str) -> Splits:
    """:func:`make_splits` for multilabel and regression targets (``train`` already limited)."""
    notes = []
    blank = [i for i, v in enumerate(train.labels) if not (v or "").strip()] if task == "regression" else []
    if blank:  # real corpora have rows nobody scored; they cannot teach a number (other files: an error)
        notes.append(f"{train.where}: {len(blank)} of {len(train.items)} rows of {train.source} have no "
                     f"'{excerpt(column)}' value (first: line {train.lines[blank[0]]}); left out of training")
        train = train.select(sorted(set(range(len(train.items))) - set(blank)))
    if task == "multilabel":
        labels = T.multilabel_names(train, explicit, separator)
        def enc(rows: Rows) -> list:
            return T.encode_multilabel(rows, labels, separator)
    else:
        labels = [column]
        def enc(rows: Rows) -> list:
            return T.encode_numbers(rows, column)
    train_ids = enc(train)
    # Stratifying needs one class per row; label sets and numbers split uniformly at random.
    parts = S.split_indices(list(range(len(train_ids))), split.model_copy(update={"stratify": False}),
                            validation=validation is None, test=test is None, source=str(train.source))
    rows: dict[str, Rows] = {"train": train.select(parts["train"])}
    ids: dict[str, list] = {"train": [train_ids[i] for i in parts["train"]]}
    for name, given in (("validation", validation), ("test", test)):
        if given is not None:
            rows[name], ids[name] = given, enc(given)
        elif parts[name]:
            rows[name], ids[name] = train.select(parts[name]), [train_ids[i] for i in parts[name]]
    for name, part in rows.items():
        if not part.items:
            raise DataError(f"{part.where}: the {name} split is empty (got no rows from {part.source}); add rows")
    if task == "multilabel" and not labels:
        raise DataError(f"{train.where}: {train.source}: no row has a label (got {len(train.items)} rows); "
                        f"join each row's labels with data.label_separator '{excerpt(separator)}'")
    settings = {"split": split.model_dump(), "limit": limit, "labels": labels, "splits": sorted(rows), "task": task,
                **({"separator": separator} if task == "multilabel" else {})}
    return Splits(labels, rows, ids, settings, notes)


def check_classes(rows: dict[str, Rows], ids: dict[str, list[int]], labels: list[str], *,
                  in_file: set[str | None]) -> list[str]:
    """Check that the splits can train and measure a classifier.

    The rule: what makes *training* meaningless is an error, what only makes a *measurement* weak is a note.

    - Error: the training split holds fewer than two classes (a one-class "classifier" scores accuracy 1.0
      and has learnt nothing), or a class of the label list has no training row (so also: fewer training
      rows than classes); the head could never learn to predict it.
    - Note: a validation or test split of a single row (its accuracy is 0 or 1, and early stopping and
      the best checkpoint follow that one example).

    Args:
        rows: the splits' rows (``train`` required).
        ids: label ids per split.
        labels: the class names.
        in_file: the labels of the training file's rows (before the split), to tell which fix applies.

    Returns:
        The notes, one line each.

    Raises:
        DataError: ``data.train: <file>: the training split has only one class, 'pos' (got 40 rows, all 'pos'); ...``.
    """
    train = rows["train"]
    present = set(ids["train"])
    if len(present) < 2:
        only = excerpt(labels[min(present)]) if present else "none"
        raise DataError(f"{train.where}: {train.source}: the training split has only one class, '{only}' (got "
                        f"{len(ids['train'])} rows, all '{only}'); a classifier needs at least 2 classes: add rows "
                        "with other labels")
    missing = [name for i, name in enumerate(labels) if i not in present]
    if missing:
        fix = "list only trained classes in data.labels" if any(name not in in_file for name in missing) else \
            "use more rows, or data.split.stratify: true (it keeps a training row of every class)"
        raise DataError(f"{train.where}: {train.source}: {len(missing)} of {len(labels)} classes have no training row "
                        f"(got {len(ids['train'])} training rows; without any: {listing(missing)}); "
                        f"every class needs training rows: add some, or {fix}")
    notes = []
    for name in ("validation", "test"):
        if name in rows and len(rows[name].items) == 1:
            origin = f"data.split.{name}" if rows[name].where == train.where else rows[name].where
            notes.append(f"{origin}: the {name} split has a single row, so its accuracy is 0 or 1 and says little; "
                         f"give it more rows")
    return notes


def balance_weights(balance: str, train_ids: list[int], num_classes: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(class_weights, train_sampler_weights)`` for ``data.balance``."""
    if balance == "loss_weights":
        return S.class_weights(train_ids, num_classes), None
    if balance == "sampler":
        return None, S.sampler_weights(train_ids, num_classes)
    return None, None


def check_num_classes(declared: int | None, labels: list[str]) -> None:
    """Raise when ``head.num_classes`` disagrees with the labels found in the data.

    Raises:
        DataError: ``head.num_classes: the training data has 3 labels (...) (got 5); ...``.
    """
    if declared is not None and declared != len(labels):
        raise DataError(f"head.num_classes: the training data has {len(labels)} labels ({listing(labels)}) (got {declared}); "
                        f"set head.num_classes: {len(labels)} or leave it null to take it from the data")
