"""Batches for the fill pass: every example of a split exactly once, similar lengths together, longest first.

Sorted batches pad little: on the quickstart's tweets (batches of 64) the fill computes 1.3% more tokens than the
train split holds, 2.9% on validation, against ~71% for batches in file order. Longest first is for memory: each
batch's activations then fit in the blocks the previous, wider batch freed. Shortest first makes every batch a
little wider than any block freed so far, and the allocator's heap grows through the pass (MiniLM, 1,800 tweets:
+252 MB resident after the fill, against +104 MB longest first).

A data-parallel run splits them over a node's ranks: ``share=(r, L)`` keeps fill batch ``j`` when
``j % L == r``, so each rank's share has every L-th length class and the shares take about as long.
"""

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


def fill_plan(data: Any, split: str, batch_size: int, share: tuple[int, int] = (0, 1)) -> list[list[int]]:
    """The example ids of each fill batch of ``split`` in this share (``(rank, ranks)``), in fill order."""
    dataset = getattr(data, split)
    lengths = split_lengths(data, split, len(dataset))
    order = list(range(len(dataset)))
    if lengths is not None:
        order.sort(key=lambda i: -lengths[i])  # stable: equal lengths keep id order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rank, ranks = share
    return batches[rank::ranks]


def fill_batches(data: Any, split: str, batch_size: int,
                 plan: list[list[int]] | None = None) -> Iterator[dict[str, Any]]:
    """Collated batches covering ``split`` once (or the batches of ``plan``, see :func:`fill_plan`), longest first
    when lengths are known.

    Sorting by length only makes the one-off fill pad less (less wasted compute); which example lands in which
    batch does not matter, because rows are stored per example id (``batch["index"]``).
    """
    batches = fill_plan(data, split, batch_size) if plan is None else plan
    loader = DataLoader(getattr(data, split), batch_sampler=batches, collate_fn=data.collate, num_workers=0)
    yield from loader
