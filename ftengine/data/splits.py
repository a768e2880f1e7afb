"""Label maps, seeded subsets, (stratified) splits and class-balance weights.

Everything here is seeded by ``data.split.seed`` and independent of the training seed, so the same spec
always trains, validates and tests on the same examples (and the activation cache key stays stable).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ftengine.data.sniff import excerpt, listing
from ftengine.errors import DataError
from ftengine.spec.data import SplitSpec


@dataclass
class Rows:
    """Labelled items read from one source (a file or folder), before label ids are assigned.

    Attributes:
        items: what each example is made of (text tuples, image paths, array rows).
        labels: label text per item (None: unlabelled input for prediction).
        lines: where each item comes from, for messages (line number, or 0 when there is none).
        source: the file or folder, for messages.
        where: the spec field naming the source (``data.validation``).
        digest: content hash of the source, or a function computing it when first needed (for the fingerprint).
    """

    items: list
    labels: list[str | None]
    lines: list[int]
    source: Path | str
    where: str
    digest: str | Callable[[], str] = ""

    def select(self, indices: Sequence[int]) -> Rows:
        """The rows at ``indices`` (in that order)."""
        return Rows([self.items[i] for i in indices], [self.labels[i] for i in indices],
                    [self.lines[i] for i in indices], self.source, self.where, self.digest)

    def origin(self, i: int) -> str:
        """``<file> line N`` (or the item itself when it has no line)."""
        return f"{self.source} line {self.lines[i]}" if self.lines[i] else excerpt(self.items[i], 200)


def sort_labels(values: set[str] | Sequence[str]) -> list[str]:
    """Sorted label names; integers sort numerically so ``10`` follows ``9``."""
    unique = set(values)
    if all(v.lstrip("-").isdigit() for v in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def label_list(train: Rows, explicit: Sequence[str] | None) -> list[str]:
    """The class order: ``explicit`` (checked against the training labels) or the sorted training labels."""
    if explicit is None:
        return sort_labels({v for v in train.labels if v is not None})
    known = set(explicit)
    if len(known) != len(explicit):
        dupes = sorted(v for v, n in Counter(explicit).items() if n > 1)
        raise DataError(f"data.labels: labels listed twice (got {listing(dupes)}); list each label once")
    for i, value in enumerate(train.labels):
        if value is not None and value not in known:
            extra = sort_labels({v for v in train.labels if v is not None and v not in known})
            raise DataError(f"data.labels: {train.origin(i)}: label '{excerpt(value)}' is not in data.labels "
                            f"(got [{listing(explicit)}]; unlisted: {listing(extra)}); add it to data.labels or fix the rows")
    return list(explicit)


def encode(rows: Rows, labels: Sequence[str], *, strict: bool = True) -> list[int]:
    """Label ids for ``rows``; -1 for unlabelled rows.

    Args:
        rows: the rows.
        labels: the class order (from the training data).
        strict: raise on labels the training data does not have (else they become -1).

    Raises:
        DataError: names the unseen labels, the file and the first row with one.
    """
    index = {name: i for i, name in enumerate(labels)}
    ids = [index.get(v, -1) if v is not None else -1 for v in rows.labels]
    if strict:
        unseen = [i for i, (v, k) in enumerate(zip(rows.labels, ids, strict=True)) if v is not None and k < 0]
        if unseen:
            names = sort_labels({rows.labels[i] for i in unseen})
            raise DataError(f"{rows.where}: {rows.origin(unseen[0])}: label '{excerpt(rows.labels[unseen[0]])}' does not "
                            f"occur in the training data (unseen: {listing(names)}; training labels: {listing(labels)}); "
                            "fix those rows or add training examples with these labels")
    return ids


def subset(n: int, limit: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``limit`` of ``range(n)``, in file order (all rows when ``limit`` is None)."""
    if limit is None or limit >= n:
        return list(range(n))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=generator)[:limit].tolist())


def _count(fraction: float, n: int) -> int:
    # At least one example for a split that was asked for, so small data never yields an empty split.
    return max(1, round(fraction * n)) if fraction > 0 else 0


def _allocate(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` over classes in proportion to ``sizes`` (largest remainder), leaving each class >= 1."""
    room = [max(0, s - 1) for s in sizes]
    n = sum(sizes)
    quota = [total * s / n for s in sizes]
    take = [min(math.floor(q), r) for q, r in zip(quota, room, strict=True)]
    order = sorted(range(len(sizes)), key=lambda c: (quota[c] - math.floor(quota[c])), reverse=True)
    while sum(take) < total and any(t < r for t, r in zip(take, room, strict=True)):
        for c in order:
            if sum(take) < total and take[c] < room[c]:
                take[c] += 1
    return take


def split_indices(label_ids: Sequence[int], split: SplitSpec, *, validation: bool, test: bool,
                  source: str) -> dict[str, list[int]]:
    """Seeded (stratified) train/validation/test indices into ``label_ids``, each sorted.

    Args:
        label_ids: class id per training-file row.
        split: fractions, seed and stratification.
        validation: split a validation set off (no validation file given).
        test: split a test set off (no test file given).
        source: the training file, for messages.

    Raises:
        DataError: the split leaves no training rows.
    """
    n = len(label_ids)
    sizes = {"test": _count(split.test, n) if test else 0, "validation": _count(split.validation, n) if validation else 0}
    if sum(sizes.values()) >= n:
        raise DataError(f"data.split: {source} has {n} rows, too few to hold out {sizes['validation']} for validation "
                        f"and {sizes['test']} for test (got validation {split.validation}, test {split.test}); "
                        "use more rows or give validation/test files")
    generator = torch.Generator().manual_seed(split.seed)
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    if not split.stratify:
        perm = torch.randperm(n, generator=generator).tolist()
        out["test"], rest = perm[:sizes["test"]], perm[sizes["test"]:]
        out["validation"], out["train"] = rest[:sizes["validation"]], rest[sizes["validation"]:]
        return {k: sorted(v) for k, v in out.items()}
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(label_ids):
        by_class.setdefault(c, []).append(i)
    classes = sorted(by_class)
    pools = [[by_class[c][j] for j in torch.randperm(len(by_class[c]), generator=generator).tolist()] for c in classes]
    for name in ("test", "validation"):
        for pool, k in zip(pools, _allocate(sizes[name], [len(p) for p in pools]), strict=True):
            out[name] += pool[:k]
            del pool[:k]
    out["train"] = [i for pool in pools for i in pool]
    for name in ("validation", "test"):
        if sizes[name] and not out[name]:
            raise DataError(f"data.split.{name}: the stratified split of {source} left the {name} split empty (got "
                            f"{n} rows in {len(classes)} classes; each class keeps a training row); use more rows "
                            "or set data.split.stratify: false")
    return {k: sorted(v) for k, v in out.items()}


def class_weights(label_ids: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights, normalised to mean 1 over the classes present (absent classes: 0)."""
    counts = torch.bincount(torch.as_tensor(list(label_ids), dtype=torch.long), minlength=num_classes).double()
    inverse = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    present = counts > 0
    return (inverse / inverse[present].mean()).float()


def sampler_weights(label_ids: Sequence[int], num_classes: int) -> torch.Tensor:
    """Per-example sampling weights 1/count(class): every class is drawn equally often."""
    ids = torch.as_tensor(list(label_ids), dtype=torch.long)
    counts = torch.bincount(ids, minlength=num_classes).double()
    return (1.0 / counts[ids]).double()
