"""Batch orders: every example once per epoch, length buckets, seeded per epoch, exact resume, balanced draws."""

from __future__ import annotations

import torch

from ftengine.data.sampling import EpochBatchSampler


def lengths(n: int) -> list[int]:
    return torch.randint(1, 100, (n,), generator=torch.Generator().manual_seed(0)).tolist()


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def test_train_epoch_covers_each_example_once_in_length_buckets() -> None:
    n, bs, lens = 1000, 8, lengths(1000)
    sampler = EpochBatchSampler(n, bs, shuffle=True, seed=0, lengths=lens, bucket_batches=5)
    batches = list(sampler)
    assert sorted(flat(batches)) == list(range(n))
    assert len(batches) == len(sampler) == 125
    # Sorted buckets pad far less than a plain shuffle: compare padded token counts.
    padded = sum(len(b) * max(lens[i] for i in b) for b in batches)
    plain = EpochBatchSampler(n, bs, shuffle=True, seed=0)
    padded_plain = sum(len(b) * max(lens[i] for i in b) for b in plain)
    assert padded < 0.8 * padded_plain
    # Within a batch, lengths come from one sorted bucket: consecutive in that bucket's order.
    for b in batches:
        assert [lens[i] for i in b] == sorted((lens[i] for i in b), reverse=True)


def test_a_small_split_still_has_several_length_buckets() -> None:
    """1,200 examples in batches of 32: 50-batch buckets would sort the whole epoch as one run."""
    n, bs, lens = 1200, 32, lengths(1200)
    batches = list(EpochBatchSampler(n, bs, shuffle=True, seed=0, lengths=lens))
    assert sorted(flat(batches)) == list(range(n)) and len(batches) == 38
    # Each bucket is sorted longest first: a batch starts a new bucket where its first length exceeds the
    # previous batch's last in the bucket's order. With 1200 // (4 * 32) = 9 batches per bucket: 5 buckets.
    maxima = sorted((max(lens[i] for i in b) for b in batches), reverse=True)
    assert maxima[0] >= 95 and sum(m >= 95 for m in maxima) >= 4  # every bucket has its own long batch


def test_order_is_a_function_of_seed_and_epoch() -> None:
    lens = lengths(200)
    a = EpochBatchSampler(200, 16, shuffle=True, seed=7, lengths=lens)
    b = EpochBatchSampler(200, 16, shuffle=True, seed=7, lengths=lens)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(EpochBatchSampler(200, 16, shuffle=True, seed=8, lengths=lens)) != first


def test_skip_resumes_with_the_remaining_batches() -> None:
    sampler = EpochBatchSampler(100, 8, shuffle=True, seed=0, lengths=lengths(100))
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.skip(5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5
    sampler.set_epoch(3)  # a new epoch starts from its first batch
    assert list(sampler) == full


def test_eval_order_is_longest_first_or_file_order() -> None:
    lens = [3, 9, 1, 9, 5]
    assert list(EpochBatchSampler(5, 2, shuffle=False, lengths=lens)) == [[1, 3], [4, 0], [2]]
    assert list(EpochBatchSampler(5, 2, shuffle=False)) == [[0, 1], [2, 3], [4]]
    assert list(EpochBatchSampler(5, 2, shuffle=False, drop_last=True)) == [[0, 1], [2, 3]]


def test_weighted_draws_balance_the_classes() -> None:
    labels = torch.tensor([0] * 900 + [1] * 100)
    weights = 1.0 / torch.bincount(labels)[labels].double()
    sampler = EpochBatchSampler(1000, 50, shuffle=True, seed=0, weights=weights)
    drawn = labels[flat(list(sampler))]
    assert len(drawn) == 1000
    assert 0.4 < drawn.float().mean().item() < 0.6  # ~half minority draws instead of 10%


def test_set_epoch_reseeds_the_loader_generator_for_worker_seeds() -> None:
    g = torch.Generator()
    sampler = EpochBatchSampler(10, 2, shuffle=True, seed=0, generator=g)
    sampler.set_epoch(2)
    first = torch.randint(0, 2**30, (1,), generator=g).item()
    sampler.set_epoch(2)
    assert torch.randint(0, 2**30, (1,), generator=g).item() == first
