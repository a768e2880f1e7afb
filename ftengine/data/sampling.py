"""Seeded batch orders: shuffled, class-balanced, and length-bucketed; exact across resume.

The order of epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run that calls
``set_epoch(e)`` and ``skip(k)`` sees exactly the batches an uninterrupted run saw from batch ``k`` on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

BUCKET_BATCHES = 50
"""Batches per length bucket at most: long enough to pad little, short enough to keep batches well mixed."""
MIN_BUCKETS = 4
"""Length buckets per epoch at least (as HF's LengthGroupedSampler): on a small dataset 50 batches would be the
whole epoch in one sorted run, so every batch would hold near-equal lengths and the batch mix would follow length."""


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``(seed, epoch)`` (hashing keeps neighbouring seeds and epochs unrelated)."""
    digest = hashlib.sha256(f"ftengine-data:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of example ids for one epoch at a time.

    Train mode (``shuffle=True``): a seeded permutation (or, with ``weights``, ``len`` seeded draws with
    replacement, as ``WeightedRandomSampler`` does); with ``lengths`` the order is cut into buckets of
    ``bucket_batches`` batches (fewer on a small split: at least ``MIN_BUCKETS`` buckets), each bucket sorted by
    length, and the batch order shuffled.
    Eval mode (``shuffle=False``): file order, or longest first when ``lengths`` are given (peak memory
    shows on the first batch, and similar lengths pad little).

    Args:
        size: examples in the split.
        batch_size: examples per batch.
        shuffle: train order (seeded) or fixed eval order.
        seed: base seed; the epoch's generator is seeded from ``(seed, epoch)``.
        lengths: tokens per example, for bucketing (text).
        weights: per-example sampling weights (class-balanced sampling).
        drop_last: drop a final short batch.
        bucket_batches: batches per length bucket, at most.
        generator: also re-seeded by ``set_epoch`` (pass the DataLoader's, so worker seeds follow the epoch).
        shard: ``(rank, world_size)`` of a data-parallel run: every batch is the global batch's examples
            ``rank::world_size`` (the batch order, sizes and resume points stay those of one process; a share can
            be empty when a short last batch has fewer examples than ranks). ``global_sizes`` gives the whole
            batches' sizes.
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 lengths: Sequence[int] | None = None, weights: torch.Tensor | None = None,
                 drop_last: bool = False, bucket_batches: int = BUCKET_BATCHES,
                 generator: torch.Generator | None = None, shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if weights is not None and len(weights) != size:
            raise ValueError(f"weights must have one entry per example ({size}) (got {len(weights)})")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long) if lengths is not None else None
        self.weights, self.drop_last, self.bucket_batches = weights, drop_last, bucket_batches
        self.generator = generator
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size (got {shard})")
        self.shard = (rank, world)
        self.epoch, self.start = 0, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order to produce next (and start at its first batch)."""
        self.epoch, self.start = epoch, 0
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed + 1, epoch))

    def skip(self, batches: int) -> None:
        """Start the current epoch at batch ``batches`` (resuming mid-epoch)."""
        self.start = batches

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of ``epoch`` (default: the current one), including any skipped ones."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch if epoch is None else epoch))
        if not self.shuffle:
            order = torch.arange(self.size)
            if self.lengths is not None:
                order = torch.sort(self.lengths, descending=True, stable=True).indices
            return self._cut(order.tolist())
        if self.weights is not None:
            order = torch.multinomial(self.weights.double(), self.size, replacement=True, generator=generator)
        else:
            order = torch.randperm(self.size, generator=generator)
        if self.lengths is None:
            return self._cut(order.tolist())
        span = self._span()
        batches: list[list[int]] = []
        for bucket in torch.split(order, span):
            by_length = bucket[torch.sort(self.lengths[bucket], descending=True, stable=True).indices]
            batches += self._cut(by_length.tolist())
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _span(self) -> int:
        """Examples per length bucket: ``bucket_batches`` batches, fewer when the split has under MIN_BUCKETS of them."""
        per_bucket = max(1, min(self.bucket_batches, self.size // (MIN_BUCKETS * self.batch_size)))
        return per_bucket * self.batch_size

    def _cut(self, order: list[int]) -> list[list[int]]:
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self.shard
        for batch in self.batches()[self.start:]:
            yield batch[rank::world] if world > 1 else batch

    def global_sizes(self) -> list[int]:
        """Examples in each whole (all ranks') batch this iterator yields, in order."""
        return [len(b) for b in self.batches()[self.start:]]

    def __len__(self) -> int:
        return max(0, self._num_batches() - self.start)

    def _num_batches(self) -> int:
        if not self.shuffle or self.lengths is None:
            full, rest = divmod(self.size, self.batch_size)
            return full + (1 if rest and not self.drop_last else 0)
        span = self._span()
        return sum(len(self._cut([0] * min(span, self.size - s))) for s in range(0, self.size, span))
