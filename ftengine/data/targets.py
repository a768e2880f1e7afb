"""Targets beyond one class per row: label sets (multilabel) and numbers (regression).

A :class:`TaskInfo` travels with the data bundle and, after training, with the model (``model/head.json``):
it says how the head's outputs are trained (loss), turned into predictions (softmax, sigmoid + threshold, or
de-normalisation) and which metrics describe them. Regression targets are normalised with the training
split's mean and standard deviation, so the head learns numbers of order 1 whatever the target's unit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ftengine.data.sniff import excerpt, listing
from ftengine.data.splits import Rows, sort_labels
from ftengine.data.tables import Table, cell, require_column
from ftengine.errors import DataError


@dataclass(frozen=True)
class TaskInfo:
    """The task of a run and what its outputs need.

    Attributes:
        kind: ``classification``, ``multilabel`` or ``regression``.
        loss: ``cross_entropy``, ``bce``, ``mse`` or ``huber``.
        target_mean: regression: the training targets' mean (outputs are ``mean + std * head output``).
        target_std: regression: the training targets' standard deviation (1 when they are all equal).
        threshold: multilabel: a label is predicted when its probability reaches this (chosen on validation).
    """

    kind: str = "classification"
    loss: str = "cross_entropy"
    target_mean: float = 0.0
    target_std: float = 1.0
    threshold: float = 0.5

    def compute_loss(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                     reduction: str = "mean") -> Tensor:
        """The training loss of (B, C) logits against the batch's targets (class ids, multi-hot rows, or numbers)."""
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, targets.float(), reduction=reduction)
        if self.kind == "regression":
            scaled = (targets.float() - self.target_mean) / self.target_std
            out = logits.reshape(scaled.shape)
            if self.loss == "huber":
                return F.huber_loss(out, scaled, delta=1.0, reduction=reduction)
            return F.mse_loss(out, scaled, reduction=reduction)
        return F.cross_entropy(logits, targets, weight=weight, reduction=reduction)

    def outputs(self, logits: Tensor) -> Tensor:
        """Probabilities (B, C) (softmax or per-label sigmoid), or predicted values (B,) in the target's unit."""
        if self.kind == "multilabel":
            return torch.sigmoid(logits)
        if self.kind == "regression":
            return logits.reshape(-1) * self.target_std + self.target_mean
        return F.softmax(logits, dim=1)

    def with_threshold(self, threshold: float) -> TaskInfo:
        """The same task with a new multilabel decision threshold."""
        return replace(self, threshold=float(threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (saved in ``model/head.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TaskInfo:
        """From :meth:`to_dict` (None: a classification run saved before tasks existed)."""
        return cls(**data) if data else cls()


def task_of(spec: Any) -> TaskInfo:
    """The task a data section asks for, before any target is seen (normalisation comes with the data)."""
    kind = getattr(spec, "task", "classification")
    loss = {"classification": "cross_entropy", "multilabel": "bce"}.get(kind) or spec.regression_loss
    return TaskInfo(kind=kind, loss=loss)


def split_labels(value: str | None, separator: str) -> list[str]:
    """A multilabel cell's labels (stripped, empty ones dropped); None or an empty cell: no labels."""
    return [part.strip() for part in (value or "").split(separator) if part.strip()]


FLAG_VALUES = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}
"""What a `label_columns` cell may hold (JSON booleans arrive as `true`/`false`)."""


def require_label_columns(spec: Any, table: Table, *, require_labels: bool) -> bool:
    """Whether ``table`` has the spec's label column(s); raises when they are missing and ``require_labels``."""
    columns = getattr(spec, "label_columns", None)
    if columns is None:
        if require_labels or spec.label_column in table.columns:
            require_column(table, spec.label_column, "data.label_column")
            return True
        return False
    if require_labels or any(c in table.columns for c in columns):
        for column in columns:
            require_column(table, column, "data.label_columns")
        return True
    return False


def row_label(spec: Any, table: Table, i: int) -> str:
    """Row ``i``'s label cell as training reads it: the class, number or delimited label set.

    With ``label_columns`` the set is the names of the columns holding 1, joined by ``label_separator``.

    Raises:
        DataError: an empty class cell, or a ``label_columns`` cell that is not 0 or 1.
    """
    columns = getattr(spec, "label_columns", None)
    if columns is None:
        # Multilabel: an empty cell is an empty label set; regression: the training split drops rows without one.
        return cell(table, i, spec.label_column, table.where, required=spec.task == "classification") or ""
    names = []
    for column in columns:
        value = (cell(table, i, column, table.where, required=False) or "").strip().lower()
        if value not in FLAG_VALUES:
            raise DataError(f"{table.where}: {table.path} line {table.lines[i]}, column '{excerpt(column)}': not 0 or "
                            f"1 (got '{excerpt(value)}'); write 1 when the row has label '{excerpt(column)}', else 0")
        if FLAG_VALUES[value]:
            names.append(column)
    return spec.label_separator.join(names)


def check_targets(spec: Any, rows: Rows, *, training_file: bool) -> None:
    """Training's target checks on some rows (``ftengine validate``'s first rows): numbers, known labels.

    Args:
        spec: the data section.
        rows: rows of one file.
        training_file: the rows are the training file's: there training leaves regression rows without a
            value out (elsewhere they are an error), and multilabel labels are checked against ``data.labels``
            with the message training gives for that file.

    Raises:
        DataError: the message training gives for the first bad row.
    """
    kind = getattr(spec, "task", "classification")
    if kind == "regression":
        kept = [i for i, v in enumerate(rows.labels) if (v or "").strip()] if training_file else range(len(rows.labels))
        encode_numbers(rows.select(kept), spec.label_column)
    elif kind == "multilabel" and (explicit := getattr(spec, "labels", None)) is not None:
        # Without data.labels any label may be new (label_columns: row_label already checked the 0/1 cells).
        if training_file:
            multilabel_names(rows, explicit, spec.label_separator)
        else:
            encode_multilabel(rows, explicit, spec.label_separator)


def multilabel_names(train: Rows, explicit: list[str] | None, separator: str) -> list[str]:
    """The label order: ``explicit`` (every label in the rows must be in it) or every label of the training rows."""
    found = sort_labels({name for value in train.labels for name in split_labels(value, separator)})
    if explicit is None:
        return found
    unknown = [name for name in found if name not in explicit]
    if unknown:
        raise DataError(f"data.labels: {train.source} has labels not in data.labels (got {listing(unknown)}); "
                        "add them to data.labels or fix the rows")
    return list(explicit)


def encode_multilabel(rows: Rows, labels: list[str], separator: str, *, strict: bool = True) -> list[list[float]]:
    """Multi-hot rows (C floats each); an unlabelled row is all NaN (predict input), an unknown label an error."""
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for i, value in enumerate(rows.labels):
        if value is None:
            out.append([math.nan] * len(labels))
            continue
        hot = [0.0] * len(labels)
        for name in split_labels(value, separator):
            if name not in index:
                if strict:
                    raise DataError(f"{rows.where}: {rows.origin(i)}: label '{excerpt(name)}' does not occur in the "
                                    f"training data (training labels: {listing(labels)}); fix the row or add "
                                    "training examples with it")
                continue
            hot[index[name]] = 1.0
        out.append(hot)
    return out


def encode_numbers(rows: Rows, column: str) -> list[float]:
    """Regression targets as floats; an unlabelled row is NaN (predict input).

    Raises:
        DataError: ``data.train: f.csv line 7, column 'score': not a number (got 'n/a'); ...``.
    """
    out = []
    for i, value in enumerate(rows.labels):
        if value is None:
            out.append(math.nan)
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise DataError(f"{rows.where}: {rows.origin(i)}, column '{excerpt(column)}': not a finite number "
                            f"(got '{excerpt(value)}'); write a number such as 3.5, or remove the row")
        out.append(number)
    return out


def normalised(task: TaskInfo, train_targets: list[float]) -> TaskInfo:
    """``task`` with the training targets' mean and (population) standard deviation; std 1 when all are equal."""
    values = torch.tensor(train_targets, dtype=torch.float64)
    mean, std = float(values.mean()), float(values.std(unbiased=False))
    return replace(task, target_mean=mean, target_std=std if std > 0 else 1.0)


def label_tensor(values: list[Any]) -> Tensor:
    """A batch's targets: (B,) int64 class ids, (B, C) float multi-hot rows, or (B,) float numbers."""
    if values and isinstance(values[0], int) and not isinstance(values[0], bool):
        return torch.tensor(values, dtype=torch.long)
    return torch.tensor(values, dtype=torch.float32)


def encode_rows(spec: Any, rows: Rows, labels: list[str], *, strict: bool) -> list[Any]:
    """Targets of one file read for eval/predict, by the data section's task (``labels``: the run's label map)."""
    from ftengine.data.splits import encode

    kind = getattr(spec, "task", "classification")
    if kind == "multilabel":
        return encode_multilabel(rows, labels, spec.label_separator, strict=strict)
    if kind == "regression":
        return encode_numbers(rows, spec.label_column)
    return encode(rows, labels, strict=strict)


def split_task(spec: Any, train_targets: list[Any]) -> TaskInfo:
    """The bundle's task: the data section's, normalised by the training targets for regression."""
    task = task_of(spec)
    return normalised(task, train_targets) if task.kind == "regression" else task
