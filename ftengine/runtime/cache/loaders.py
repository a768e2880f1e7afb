"""Batches for the fill pass: every example of a split exactly once, similar lengths together."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader


def split_lengths(data: Any, split: str, size: int) -> Sequence[int] | None:
    """Per-example token counts of ``split`` when the data bundle knows them (text), else None."""
    lengths = getattr(data, "lengths", None)
    if isinstance(lengths, Mapping):
        lengths = lengths.get(split)
    elif callable(lengths):
        lengths = lengths(split)
    elif split != "train":  # a bare sequence describes the training split
        lengths = None
    if lengths is None or len(lengths) != size:
        return None
    return [int(n) for n in lengths]


def fill_batches(data: Any, split: str, batch_size: int) -> Iterator[dict[str, Any]]:
    """Collated batches covering ``split`` once, in length order when lengths are known.

    Sorting by length only makes the one-off fill pad less (less wasted compute); which example lands in which
    batch does not matter, because rows are stored per example id (``batch["index"]``).
    """
    dataset = getattr(data, split)
    lengths = split_lengths(data, split, len(dataset))
    order = list(range(len(dataset)))
    if lengths is not None:
        order.sort(key=lambda i: lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=data.collate, num_workers=0)
    yield from loader
