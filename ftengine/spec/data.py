"""Data sections: which labelled examples to train, validate and test on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ftengine.spec.base import MAX_PIXELS, MAX_ROWS, MAX_SEED, MAX_TOKENS, StrictModel

Balance = Literal["none", "sampler", "loss_weights"]
Task = Literal["classification", "multilabel", "regression"]

DIGIT_TAGS: dict[str, frozenset[int]] = {"even": frozenset({0, 2, 4, 6, 8}), "five_or_more": frozenset(range(5, 10)),
                                         "prime": frozenset({2, 3, 5, 7})}
"""`sklearn_digits` with `task: multilabel`: each tag and the digits that carry it (a 1 carries none)."""


class SplitSpec(StrictModel):
    """Seeded split of the training file for the splits not given as files."""

    validation: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Fraction of the training rows held out for validation (when `validation` names no file)."""
    test: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Fraction of the training rows held out for the final test report (when `test` names no file)."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Seed of the split (independent of the training seed so splits stay put)."""
    stratify: bool = True
    """Keep class proportions equal across the splits."""

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> "SplitSpec":
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"validation + test fractions leave no training rows (got {self.validation} + {self.test}); keep the sum below 1"
            )
        return self


class AugmentSpec(StrictModel):
    """Random image augmentation for training (any of it rules out activation caching)."""

    hflip: bool = False
    """Random horizontal flips."""
    random_resized_crop: bool = False
    """Random resized crops (scale 0.8-1.0)."""
    rotation: float = Field(default=0.0, ge=0.0, le=180.0)
    """Random rotation range in degrees."""
    color_jitter: float = Field(default=0.0, ge=0.0, le=1.0)
    """Brightness/contrast/saturation jitter strength."""

    @property
    def is_random(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.hflip or self.random_resized_crop or self.rotation > 0 or self.color_jitter > 0


class _FileSplits(StrictModel):
    train: str
    """Training file (path relative to the spec file, or `pkg:<package>/<file>`)."""
    validation: str | None = None
    """Validation file; null splits it off the training file (see `split`)."""
    test: str | None = None
    """Test file; null splits it off the training file when `split.test` > 0."""
    split: SplitSpec = Field(default_factory=SplitSpec)
    """How to split the training file for the splits not given as files."""
    limit: int | None = Field(default=None, gt=0, le=MAX_ROWS)
    """Use a seeded random subset of this many training-file rows (before splitting)."""
    balance: Balance = "none"
    """Imbalanced classes: `sampler` (class-balanced sampling) or `loss_weights` (weighted loss)."""
    labels: list[str] | None = None
    """Explicit class order; null sorts the labels found in the training data."""


class _Targets(StrictModel):
    """What the label column holds: the task of the run (the head's width and loss follow from it)."""

    task: Task = "classification"
    """`classification` (one class per row, softmax + cross-entropy), `multilabel` (a set of labels per row,
    joined by `label_separator`; sigmoid + BCE, threshold chosen on validation) or `regression` (a number per
    row; normalised by the training split's mean/std, loss `regression_loss`)."""
    label_separator: str = Field(default="|", min_length=1, max_length=8)
    """`multilabel`: what separates the labels of one row (`"sports|politics"`); an empty cell is no label."""
    label_columns: list[str] | None = Field(default=None, min_length=1)
    """`multilabel`: one 0/1 column per label instead of one delimited `label_column`; the label is the
    column's name and the head's label order is this list's."""
    regression_loss: Literal["mse", "huber"] = "mse"
    """`regression`: mean squared error, or Huber (delta 1 standard deviation of the training targets)."""

    @model_validator(mode="after")
    def _task_fits(self) -> "_Targets":
        if self.task != "classification" and getattr(self, "balance", "none") != "none":
            raise ValueError(f"balance applies to classification (got balance '{self.balance}' with task "
                             f"'{self.task}'); set balance: none")
        if self.task == "regression" and getattr(self, "labels", None) is not None:
            raise ValueError("a regression target has no class list (got labels); drop labels")
        if self.label_columns is not None:
            self._check_label_columns(self.label_columns)
        return self

    def _check_label_columns(self, columns: list[str]) -> None:
        if self.task != "multilabel":
            raise ValueError(f"label_columns are the 0/1 columns of a multilabel task (got task '{self.task}'); "
                             "set task: multilabel, or use label_column")
        if getattr(self, "labels", None) is not None:
            raise ValueError("label_columns already give the label order (got labels too); drop labels")
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"label_columns name a column twice (got {', '.join(repeated)}); list each once")
        joined = [c for c in columns if self.label_separator in c or not c.strip()]
        if joined:
            raise ValueError(f"label_columns: a label name must be non-empty and free of label_separator "
                             f"'{self.label_separator}' (got '{joined[0]}'); set another label_separator")


class TextDataSpec(_FileSplits, _Targets):
    """Text classification from CSV or JSON-lines files."""

    kind: Literal["text"] = "text"
    format: Literal["auto", "csv", "jsonl"] = "auto"
    """File format; auto decides by extension (.csv, .tsv, .jsonl, .json)."""
    text_column: str = "text"
    """Column holding the text."""
    text_pair_column: str | None = None
    """Optional second text column (sentence pairs)."""
    label_column: str = "label"
    """Column holding the label (class, `|`-joined labels, or number: see `task`; unused with `label_columns`)."""
    encoding: str = "utf-8"
    """File encoding, e.g. `latin-1`."""
    empty_text: Literal["keep", "drop", "error"] = "keep"
    """Rows of the data files whose text (or text pair) is empty or whitespace only: `keep` trains on them
    and notes how many each file has, `drop` leaves them out (noting how many), `error` stops at the first."""
    max_length: int = Field(default=128, gt=1, le=MAX_TOKENS)
    """Tokens per example after truncation; batches are padded only to their longest example."""
    sort_by_length: bool = True
    """Bucket batches by length so padding stays small."""


class ImageFolderDataSpec(_FileSplits):
    """Image classification from a folder with one subfolder per class."""

    kind: Literal["image_folder"] = "image_folder"
    image_size: int | None = Field(default=None, gt=0, le=MAX_PIXELS)
    """Resize to this many pixels per side; null uses the backbone's preferred size."""
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    """Random training augmentation."""


class ImageCsvDataSpec(_FileSplits, _Targets):
    """Image classification from a CSV of image paths and labels."""

    kind: Literal["image_csv"] = "image_csv"
    path_column: str = "path"
    """Column holding image paths (relative to the CSV file)."""
    label_column: str = "label"
    """Column holding the label (class, `|`-joined labels, or number: see `task`; unused with `label_columns`)."""
    encoding: str = "utf-8"
    """CSV encoding."""
    image_size: int | None = Field(default=None, gt=0, le=MAX_PIXELS)
    """Resize to this many pixels per side; null uses the backbone's preferred size."""
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    """Random training augmentation."""


class DigitsDataSpec(StrictModel):
    """scikit-learn's 1,797 real handwritten digits (8x8 grey), resized and given 3 channels."""

    kind: Literal["sklearn_digits"] = "sklearn_digits"
    task: Literal["classification", "multilabel"] = "classification"
    """`classification` (the digit, 10 classes) or `multilabel`: the tags of `DIGIT_TAGS` that the digit carries
    (`even`, `five_or_more`, `prime`; a 4 is even, a 7 five_or_more and prime), sigmoid + BCE."""
    split: SplitSpec = Field(default_factory=lambda: SplitSpec(validation=0.2))
    """Seeded split into train / validation / test."""
    image_size: int = Field(default=32, gt=0, le=MAX_PIXELS)
    """Resize the 8x8 digits to this many pixels per side."""
    limit: int | None = Field(default=None, gt=0, le=MAX_ROWS)
    """Use a seeded random subset of this many digits."""
    balance: Balance = "none"
    """Imbalanced classes: `sampler` or `loss_weights`."""
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    """Random training augmentation."""

    @model_validator(mode="after")
    def _balance_fits(self) -> "DigitsDataSpec":
        if self.task != "classification" and self.balance != "none":
            raise ValueError(f"balance applies to classification (got balance '{self.balance}' with task "
                             f"'{self.task}'); set balance: none")
        return self


DataSpec = TextDataSpec | ImageFolderDataSpec | ImageCsvDataSpec | DigitsDataSpec
