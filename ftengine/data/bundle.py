"""DataBundle: the splits of one data section, their collate function and loaders."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ftengine.data.sampling import EpochBatchSampler
from ftengine.data.sniff import listing
from ftengine.data.targets import TaskInfo

SPLITS = ("train", "validation", "test")
EMPTY_BATCH: dict[str, Any] = {"empty": True}
"""A data-parallel rank's share of a batch with fewer examples than ranks: nothing to run (see ``make_loader``).
Test with ``is_empty``: from DataLoader workers it arrives as a copy."""


def is_empty(batch: dict[str, Any]) -> bool:
    """Whether `batch` is an empty share (``EMPTY_BATCH`` or a copy of it)."""
    return batch.get("empty") is True


@dataclass
class DataBundle:
    """The train/validation/test datasets of a spec's data section.

    Examples are dicts with ``"label"`` and ``"index"`` (the example's id within its split) plus
    ``"input_ids"`` (text, unpadded) or ``"pixels"`` (image, (3, H, W) float); ``collate`` turns a
    list of them into a batch with ``"labels"`` and ``"index"`` LongTensors.

    Attributes:
        kind: the data kind (``text``, ``image_folder``, ``image_csv``, ``sklearn_digits``).
        modality: ``text`` or ``image``.
        train: training examples (None only in bundles made by ``load_file`` for eval/predict).
        validation: validation examples (None: no validation split).
        test: test examples (None: no test split).
        labels: class names; position = class id (multilabel: label names; regression: ``[target column]``).
        task: the task (loss, outputs, regression normalisation from the training split); classification by default.
        collate: ``list[example] -> batch``; text batches are padded to their longest example.
        class_weights: (num_classes,) loss weights when ``balance: loss_weights``, else None.
        train_sampler_weights: (len(train),) sampling weights when ``balance: sampler``, else None.
        lengths: tokens per example for each split (text), else None.
        sort_by_length: loaders bucket (train) / sort (eval) by length.
        deterministic: no random augmentation (a precondition for caching activations).
        seed: default loader seed (the training seed).
        stats: facts for the run log (counts, tokenization time, tokens per example, notes).
        fingerprint_parts: what ``fingerprint()`` hashes (file digests, settings).
    """

    kind: str
    modality: str
    train: Dataset | None
    validation: Dataset | None
    test: Dataset | None
    labels: list[str]
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
    task: TaskInfo = field(default_factory=TaskInfo)
    class_weights: torch.Tensor | None = None
    train_sampler_weights: torch.Tensor | None = None
    lengths: dict[str, list[int]] | None = None
    sort_by_length: bool = False
    deterministic: bool = True
    seed: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    fingerprint_parts: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.labels)

    def split(self, name: str) -> Dataset | None:
        """The dataset of split ``name`` (``train``, ``validation`` or ``test``)."""
        if name not in SPLITS:
            raise KeyError(f"no split '{name}' (splits: {', '.join(SPLITS)})")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """sha256 over the data files' content and every setting that changes the examples.

        The training seed is not part of it: it changes the batch order, never an example.
        """
        if self._fingerprint is None:
            # Callables are content hashes computed only now (hashing every image is not free).
            blob = json.dumps(self.fingerprint_parts, sort_keys=True, default=lambda v: v() if callable(v) else str(v))
            self._fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        return self._fingerprint

    def make_loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int | None = None, *,
                    epoch: int = 0, skip_batches: int = 0, num_workers: int = 0, drop_last: bool = False,
                    pin_memory: bool = False, shard: tuple[int, int] = (0, 1)) -> DataLoader:
        """A DataLoader over ``split`` whose order depends only on ``(seed, epoch)``.

        Training (``shuffle=True``) uses the class-balanced sampling weights when the spec asks for them and
        buckets text by length when ``sort_by_length``; evaluation (``shuffle=False``) visits every example
        once, longest first for text (batches carry ``"index"`` to map predictions back).

        For the next epoch call ``loader.batch_sampler.set_epoch(epoch)`` (or make a new loader); to resume
        mid-epoch pass ``skip_batches`` (or call ``loader.batch_sampler.skip(k)``).

        Args:
            split: ``train``, ``validation`` or ``test``.
            batch_size: examples per batch.
            shuffle: training order.
            seed: order seed (default: the bundle's training seed).
            epoch: which epoch's order.
            skip_batches: batches of this epoch already consumed.
            num_workers: DataLoader worker processes.
            drop_last: drop a final short batch.
            pin_memory: pin batches for faster host-to-GPU copies.
            shard: ``(rank, world_size)``: this rank's share of every batch (see ``EpochBatchSampler``); an
                empty share is the batch ``EMPTY_BATCH``.
        """
        dataset = self.split(split)
        if dataset is None:
            raise KeyError(f"this data has no {split} split")
        lengths = self.lengths.get(split) if self.lengths is not None and self.sort_by_length else None
        weights = self.train_sampler_weights if shuffle and split == "train" else None
        generator = torch.Generator()
        sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=self.seed if seed is None else seed,
                                    lengths=lengths, weights=weights, drop_last=drop_last, generator=generator,
                                    shard=shard)
        sampler.set_epoch(epoch)
        sampler.skip(skip_batches)
        collate = self.collate if shard[1] == 1 else _ShareCollate(self.collate)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                          pin_memory=pin_memory, generator=generator, persistent_workers=False)

    def describe(self) -> str:
        """For the run log: split sizes, classes, how long preparing the data took; then a ``note:`` line per note."""
        sizes = ", ".join(f"{len(d):,} {name}" for name in SPLITS if (d := self.split(name)) is not None)
        shown = listing(self.labels, 6)
        extra = ""
        if "tokenize_seconds" in self.stats:
            s = self.stats
            extra = (f"; tokenized {s['tokenized']:,} texts in {s['tokenize_seconds']:.2f} s "
                     f"({s['tokenized'] / max(s['tokenize_seconds'], 1e-9):,.0f}/s), "
                     f"{s['mean_tokens']:.1f} tokens/example (max {s['max_tokens']}, {s['truncated']:,} truncated)")
        notes = "".join(f"\nnote: {line}" for line in self.stats.get("notes", ()))
        what = {"multilabel": f"multilabel, {self.num_classes} labels ({shown})",
                "regression": f"regression of {shown} (training mean {self.task.target_mean:.4g}, "
                              f"std {self.task.target_std:.4g})"}.get(self.task.kind,
                                                                     f"{self.num_classes} classes ({shown})")
        return f"data ({self.kind}): {sizes} examples, {what}{extra}{notes}"


def counts(label_ids: Sequence[int], labels: Sequence[str]) -> dict[str, int]:
    """Examples per class name (for stats and logs)."""
    known = torch.as_tensor([i for i in label_ids if i >= 0], dtype=torch.long)  # -1: unlabelled
    tally = torch.bincount(known, minlength=len(labels))
    return {name: int(n) for name, n in zip(labels, tally.tolist(), strict=False)}


class _ShareCollate:
    """A rank's collate: an empty share of a batch becomes ``EMPTY_BATCH`` (picklable for DataLoader workers)."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        return self.collate(items) if items else EMPTY_BATCH
