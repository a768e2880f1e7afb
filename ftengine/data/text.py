"""Text classification data: CSV/TSV/JSONL rows, tokenized once up front, padded per batch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ftengine.data.assemble import balance_weights, make_splits
from ftengine.data.bundle import DataBundle, counts
from ftengine.data.splits import Rows
from ftengine.data.targets import encode_rows, label_tensor, require_label_columns, row_label, split_task
from ftengine.data.tables import Table, cell, locate, read_table, require_column
from ftengine.errors import DataError, PlanError
from ftengine.spec.data import TextDataSpec


class TextDataset(Dataset):
    """Tokenized examples of one split (token ids unpadded; padding happens in the collate).

    Attributes:
        input_ids: token ids per example (truncated to max_length).
        token_type_ids: segment ids per example (sentence pairs), or None.
        label_ids: class id per example (-1: unlabelled).
        texts: the source text (and pair) per example, for predictions and error messages.
        lines: line number of each example in its file.
    """

    def __init__(self, input_ids: list[list[int]], label_ids: list[int], *, token_type_ids: list[list[int]] | None = None,
                 texts: list[tuple[str, str | None]] | None = None, lines: list[int] | None = None) -> None:
        self.input_ids, self.label_ids, self.token_type_ids = input_ids, label_ids, token_type_ids
        self.texts, self.lines = texts, lines

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = {"input_ids": self.input_ids[index], "label": self.label_ids[index], "index": index}
        if self.token_type_ids is not None:
            example["token_type_ids"] = self.token_type_ids[index]
        return example

    @property
    def lengths(self) -> list[int]:
        """Tokens per example."""
        return [len(ids) for ids in self.input_ids]


class TextCollate:
    """Pads a list of examples to the longest one (right padding; the attention mask marks real tokens).

    Args:
        pad_id: the tokenizer's padding token id.
        token_types: emit ``token_type_ids`` (zeros unless the examples carry them), for models that take them.
    """

    def __init__(self, pad_id: int, token_types: bool) -> None:
        self.pad_id, self.token_types = pad_id, token_types

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        batch = {
            "input_ids": torch.tensor([e["input_ids"] + [self.pad_id] * (width - len(e["input_ids"])) for e in examples]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in examples]),
        }
        if self.token_types:
            batch["token_type_ids"] = torch.tensor([e.get("token_type_ids", [0] * len(e["input_ids"]))
                                                    + [0] * (width - len(e["input_ids"])) for e in examples])
        batch["labels"] = label_tensor([e["label"] for e in examples])
        batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
        return batch


def read_rows(spec: TextDataSpec, path: Path, where: str, *, require_labels: bool = True) -> Rows:
    """Rows of one file: items are ``(text, pair)``; labels from ``label_column``.

    Args:
        spec: the data section.
        path: the file.
        where: spec field naming the file.
        require_labels: the label column must exist (False: prediction input, labels optional).
    """
    return table_rows(spec, read_table(path, where, fmt=spec.format, encoding=spec.encoding),
                      require_labels=require_labels)


def table_rows(spec: TextDataSpec, table: Table, *, require_labels: bool = True) -> Rows:
    """Rows of a parsed table (see :func:`read_rows`); ``ftengine validate`` passes a file's first rows.

    Raises:
        DataError: a missing column, a cell that is not text, or an empty label (classification).
    """
    where = table.where
    require_column(table, spec.text_column, "data.text_column")
    if spec.text_pair_column is not None:
        require_column(table, spec.text_pair_column, "data.text_pair_column")
    has_labels = require_label_columns(spec, table, require_labels=require_labels)
    items, labels = [], []
    for i in range(len(table.rows)):
        text = cell(table, i, spec.text_column, where, required=False) or ""
        pair = (cell(table, i, spec.text_pair_column, where, required=False) or "") if spec.text_pair_column else None
        items.append((text, pair))
        labels.append(row_label(spec, table, i) if has_labels else None)
    return Rows(items, labels, table.lines, table.path, where, table.digest)


def blank_rows(rows: Rows) -> list[int]:
    """Indices of rows whose text, or text pair, is empty or whitespace only."""
    return [i for i, (text, pair) in enumerate(rows.items) if not text.strip() or (pair is not None and not pair.strip())]


def screen_blank(rows: Rows, mode: str) -> tuple[Rows, str | None]:
    """Apply ``data.empty_text`` to one file's rows: ``(rows to use, note or None)``.

    Raises:
        DataError: ``error`` mode and a blank row (names the first one and how many there are).
    """
    blank = blank_rows(rows)
    if not blank:
        return rows, None
    lines = ", ".join(str(rows.lines[i]) for i in blank[:5]) + (", ..." if len(blank) > 5 else "")
    where = f"{rows.where}: {len(blank)} of {len(rows.items)} rows of {rows.source} have empty or whitespace-only text"
    if mode == "error":
        raise DataError(f"{where} (got lines {lines}); fill them in, remove them, or set data.empty_text: drop")
    if mode == "drop":
        blanks = set(blank)
        return rows.select([i for i in range(len(rows.items)) if i not in blanks]), f"{where}; dropped them (lines {lines})"
    return rows, f"{where} (lines {lines}); trained on as they are: set data.empty_text: drop to leave them out"


def effective_max_length(tokenizer: Any, max_length: int) -> tuple[int, str | None]:
    """``max_length`` capped at what the model's position embeddings allow, with a note when capped."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000 and max_length > limit:
        return limit, f"data.max_length {max_length} exceeds the model's {limit} positions; using {limit}"
    return max_length, None


def tokenize(tokenizer: Any, rows: Rows, max_length: int) -> tuple[list[list[int]], list[list[int]] | None]:
    """Token ids (and segment ids for pairs) for every row, in one batched call (fast tokenizers run it natively)."""
    texts = [t for t, _ in rows.items]
    pairs = [p or "" for _, p in rows.items] if rows.items and rows.items[0][1] is not None else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=pairs is not None)
    return enc["input_ids"], (enc["token_type_ids"] if pairs is not None else None)


def tokenizer_identity(tokenizer: Any, max_length: int) -> dict[str, Any]:
    """What identifies the tokenization (for the fingerprint)."""
    return {"tokenizer": type(tokenizer).__name__, "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
            "vocab_size": len(tokenizer), "max_length": max_length}


def _tokenizer(backbone: Any) -> Any:
    tokenizer = getattr(backbone, "tokenizer", None)
    if tokenizer is None:
        raise PlanError(f"data.kind: text data needs a text backbone with a tokenizer (got a "
                        f"{getattr(backbone, 'modality', 'non-text')} backbone); use an image data kind or a text backbone")
    return tokenizer


def _no_empty(tokenizer: Any, input_ids: list[list[int]], token_types: list[list[int]] | None) -> None:
    """Give an empty text one token (tokenizers without special tokens, e.g. GPT-2, return none for ""),
    so no row of a batch is all padding."""
    filler = next((t for t in (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) if t is not None), 0)
    for i, ids in enumerate(input_ids):
        if not ids:
            input_ids[i] = [filler]
            if token_types is not None:
                token_types[i] = [0]


def _datasets(tokenizer: Any, rows: dict[str, Rows], ids: dict[str, list[int]], max_length: int) -> tuple[dict, dict]:
    datasets, stats = {}, {"tokenized": 0, "tokenize_seconds": 0.0}
    for name, part in rows.items():
        start = time.perf_counter()
        input_ids, token_types = tokenize(tokenizer, part, max_length)
        _no_empty(tokenizer, input_ids, token_types)
        stats["tokenize_seconds"] += time.perf_counter() - start
        stats["tokenized"] += len(input_ids)
        datasets[name] = TextDataset(input_ids, ids[name], token_type_ids=token_types, texts=part.items, lines=part.lines)
    lengths = [n for d in datasets.values() for n in d.lengths]
    stats.update(mean_tokens=sum(lengths) / max(len(lengths), 1), max_tokens=max(lengths, default=0),
                 truncated=sum(n >= max_length for n in lengths))  # at the limit: (almost surely) truncated
    return datasets, stats


def _collate(tokenizer: Any) -> TextCollate:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TextCollate(pad_id, "token_type_ids" in getattr(tokenizer, "model_input_names", ()))


def build_text(spec: TextDataSpec, backbone: Any, spec_dir: Path | None, seed: int) -> DataBundle:
    """Read, split and tokenize a text data section (see :func:`ftengine.data.build_data`)."""
    tokenizer = _tokenizer(backbone)
    max_length, note = effective_max_length(tokenizer, spec.max_length)
    given: dict[str, Rows] = {}
    notes = [note] if note else []
    for name in ("train", "validation", "test"):
        if (value := getattr(spec, name)) is not None:
            rows = read_rows(spec, locate(value, spec_dir, f"data.{name}"), f"data.{name}")
            given[name], blank_note = screen_blank(rows, spec.empty_text)
            notes += [blank_note] if blank_note else []
    splits = make_splits(given["train"], given.get("validation"), given.get("test"), split=spec.split,
                         limit=spec.limit, explicit=spec.label_columns or spec.labels, task=spec.task, separator=spec.label_separator,
                         column=spec.label_column)
    datasets, stats = _datasets(tokenizer, splits.rows, splits.ids, max_length)
    class_weights, sampler_weights = balance_weights(spec.balance, splits.ids["train"], len(splits.labels))
    if spec.task == "classification":
        stats["counts"] = {name: counts(i, splits.labels) for name, i in splits.ids.items()}
    stats.update(notes=notes + splits.notes)
    # Only `drop` changes the examples; keep/error leave the fingerprint (and old runs' caches) as they were.
    dropped = {"empty_text": "drop"} if spec.empty_text == "drop" else {}
    parts = dict(kind="text", digests={name: rows.digest for name, rows in given.items()},
                 columns=[spec.text_column, spec.text_pair_column, *(spec.label_columns or [spec.label_column])], format=spec.format,
                 encoding=spec.encoding, **splits.settings, **tokenizer_identity(tokenizer, max_length), **dropped)
    return DataBundle(kind="text", modality="text", train=datasets["train"], validation=datasets.get("validation"),
                      test=datasets.get("test"), labels=splits.labels, collate=_collate(tokenizer),
                      task=split_task(spec, splits.ids["train"]), class_weights=class_weights, train_sampler_weights=sampler_weights,
                      lengths={name: d.lengths for name, d in datasets.items()}, sort_by_length=spec.sort_by_length,
                      deterministic=True, seed=seed, stats=stats, fingerprint_parts=parts)


def load_text(spec: TextDataSpec, backbone: Any, path: Path, labels: list[str], *, require_labels: bool,
              where: str) -> DataBundle:
    """One file as the ``test`` split of a bundle, labelled with a finished run's label map."""
    tokenizer = _tokenizer(backbone)
    max_length, _ = effective_max_length(tokenizer, spec.max_length)
    rows = read_rows(spec, path, where, require_labels=require_labels)
    ids = encode_rows(spec, rows, labels, strict=require_labels)
    datasets, stats = _datasets(tokenizer, {"test": rows}, {"test": ids}, max_length)
    return DataBundle(kind="text", modality="text", train=None, validation=None, test=datasets["test"],
                      labels=list(labels), collate=_collate(tokenizer), lengths={"test": datasets["test"].lengths},
                      sort_by_length=spec.sort_by_length, stats=stats,
                      fingerprint_parts=dict(kind="text", file=rows.digest, **tokenizer_identity(tokenizer, max_length)))
