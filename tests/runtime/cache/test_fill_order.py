"""The fill's batches: every example once, longest first, little padding, shares that cover the plan."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ftengine.runtime.cache.loaders import fill_plan


@dataclass
class _Data:
    train: list[int]
    lengths: dict[str, list[int]]


def _data(n: int, seed: int = 0) -> _Data:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 64) for _ in range(n)]
    return _Data(train=list(range(n)), lengths={"train": lengths})


def test_batches_cover_every_example_once_longest_first() -> None:
    data = _data(1000)
    lengths = data.lengths["train"]
    plan = fill_plan(data, "train", 64)
    assert sorted(i for batch in plan for i in batch) == list(range(1000))
    assert [len(b) for b in plan] == [64] * 15 + [40]
    # each batch's shortest example is at least as long as the next batch's longest: widths never grow
    for batch, following in zip(plan, plan[1:]):
        assert min(lengths[i] for i in batch) >= max(lengths[i] for i in following)
    expected = sorted(range(1000), key=lambda i: (-lengths[i], i))  # stable descending sort, by hand
    assert [i for batch in plan for i in batch] == expected


def test_sorted_batches_pad_far_less_than_batches_in_order() -> None:
    data = _data(1000)
    lengths = data.lengths["train"]
    real = sum(lengths)

    def computed(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    in_order = [list(range(i, min(i + 64, 1000))) for i in range(0, 1000, 64)]
    # 16 batches over uniform 1..64 tokens: each spans ~4 lengths, ~2 padded tokens on ~32 real (about 6%)
    assert computed(fill_plan(data, "train", 64)) - real < 0.10 * real
    assert computed(in_order) - real > 0.5 * real


def test_shares_take_every_lth_batch_and_together_make_the_plan() -> None:
    data = _data(500)
    whole = fill_plan(data, "train", 32)
    shares = [fill_plan(data, "train", 32, (rank, 3)) for rank in range(3)]
    assert [s for s in shares] == [whole[0::3], whole[1::3], whole[2::3]]
    assert sorted(i for share in shares for batch in share for i in batch) == list(range(500))


def test_without_lengths_the_plan_keeps_dataset_order() -> None:
    data = _Data(train=list(range(10)), lengths={})
    assert fill_plan(data, "train", 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
