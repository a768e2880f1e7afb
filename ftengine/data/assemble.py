"""From rows read off files to labelled splits: limit, label map, split, class balance.

Shared by every data kind; the kind-specific builders only read rows and turn items into examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ftengine.data import splits as S
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
    """

    labels: list[str]
    rows: dict[str, Rows]
    ids: dict[str, list[int]]
    settings: dict[str, Any]


def make_splits(train: Rows, validation: Rows | None, test: Rows | None, *, split: SplitSpec,
                limit: int | None, explicit: list[str] | None) -> Splits:
    """Apply ``limit`` to the training rows, fix the label order, and split off what no file gives.

    Args:
        train: rows of the training file.
        validation: rows of the validation file, or None to split them off ``train`` (``split.validation``).
        test: rows of the test file, or None to split them off ``train`` (``split.test``).
        split: fractions, seed, stratification.
        limit: seeded subset of the training rows (before splitting).
        explicit: the spec's label order, or None for sorted training labels.

    Raises:
        DataError: unknown or unseen labels, or empty splits.
    """
    train = train.select(S.subset(len(train.items), limit, split.seed))
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
    # Content digests (not paths) identify the files: a moved file keeps its cached activations.
    settings = {"split": split.model_dump(), "limit": limit, "labels": labels, "splits": sorted(rows)}
    return Splits(labels, rows, ids, settings)


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
        shown = ", ".join(labels[:10]) + (" ..." if len(labels) > 10 else "")
        raise DataError(f"head.num_classes: the training data has {len(labels)} labels ({shown}) (got {declared}); "
                        f"set head.num_classes: {len(labels)} or leave it null to take it from the data")
