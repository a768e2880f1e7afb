"""Label order, seeded subsets, stratified splits and class-balance weights."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from ftengine.data.splits import (
    Rows,
    class_weights,
    encode,
    label_list,
    sampler_weights,
    sort_labels,
    split_indices,
    subset,
)
from ftengine.errors import DataError
from ftengine.spec.data import SplitSpec


def rows(labels: list[str], where: str = "data.train") -> Rows:
    return Rows(list(range(len(labels))), labels, list(range(2, len(labels) + 2)), "t.csv", where)


def test_numeric_labels_sort_as_numbers() -> None:
    assert sort_labels({"10", "9", "1", "0"}) == ["0", "1", "9", "10"]
    assert sort_labels({"pos", "neg", "neutral"}) == ["neg", "neutral", "pos"]


def test_explicit_labels_keep_their_order_and_reject_unlisted() -> None:
    assert label_list(rows(["b", "a", "b"]), ["b", "a", "c"]) == ["b", "a", "c"]
    with pytest.raises(DataError) as err:
        label_list(rows(["a", "zz", "b", "yy"]), ["a", "b"])
    assert str(err.value) == ("data.labels: t.csv line 3: label 'zz' is not in data.labels (got [a, b]; unlisted: "
                              "yy, zz); add it to data.labels or fix the rows")


def test_unseen_validation_label_names_label_file_and_first_row() -> None:
    with pytest.raises(DataError) as err:
        encode(rows(["a", "b", "c", "d", "c"], "data.validation"), ["a", "b"])
    assert str(err.value) == ("data.validation: t.csv line 4: label 'c' does not occur in the training data "
                              "(unseen: c, d; training labels: a, b); fix those rows or add training examples with "
                              "these labels")
    assert encode(rows(["a", "c"]), ["a", "b"], strict=False) == [0, -1]


def test_subset_is_seeded_sorted_and_sized() -> None:
    a, b = subset(1000, 100, seed=3), subset(1000, 100, seed=3)
    assert a == b and len(set(a)) == 100 and a == sorted(a)
    assert subset(1000, 100, seed=4) != a
    assert subset(10, 100, seed=0) == list(range(10))


def test_stratified_split_keeps_proportions_and_partitions() -> None:
    labels = [0] * 600 + [1] * 300 + [2] * 100
    parts = split_indices(labels, SplitSpec(validation=0.1, test=0.2), validation=True, test=True, source="t.csv")
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(1000))
    assert len(parts["validation"]) == 100 and len(parts["test"]) == 200
    assert Counter(labels[i] for i in parts["validation"]) == {0: 60, 1: 30, 2: 10}
    assert Counter(labels[i] for i in parts["test"]) == {0: 120, 1: 60, 2: 20}
    again = split_indices(labels, SplitSpec(validation=0.1, test=0.2), validation=True, test=True, source="t.csv")
    assert again == parts
    other = split_indices(labels, SplitSpec(validation=0.1, test=0.2, seed=1), validation=True, test=True, source="")
    assert other["validation"] != parts["validation"]


def test_largest_remainder_hits_the_requested_size_exactly() -> None:
    labels = [0] * 7 + [1] * 5 + [2] * 3  # 15 rows, 0.2 -> 3 validation rows; quotas 1.4, 1.0, 0.6
    parts = split_indices(labels, SplitSpec(validation=0.2), validation=True, test=False, source="t.csv")
    assert len(parts["validation"]) == 3 and parts["test"] == []
    assert Counter(labels[i] for i in parts["validation"]) == {0: 1, 1: 1, 2: 1}


def test_every_class_keeps_a_training_row() -> None:
    labels = [0] * 20 + [1]  # the singleton class must not vanish from training
    parts = split_indices(labels, SplitSpec(validation=0.5), validation=True, test=False, source="t.csv")
    assert 20 in parts["train"]


def test_unstratified_split_sizes() -> None:
    parts = split_indices([0] * 50, SplitSpec(validation=0.1, test=0.1, stratify=False), validation=True, test=True,
                          source="t.csv")
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (40, 5, 5)


def test_too_few_rows_and_emptied_stratified_split() -> None:
    with pytest.raises(DataError, match=r"^data.split: t.csv has 2 rows, too few to hold out 1 for validation and 1"):
        split_indices([0, 1], SplitSpec(validation=0.1, test=0.1), validation=True, test=True, source="t.csv")
    with pytest.raises(DataError, match=r"^data.split.validation: the stratified split of t.csv left the validation "
                                        r"split empty .*set data.split.stratify: false"):
        split_indices([0, 1, 2], SplitSpec(validation=0.3), validation=True, test=False, source="t.csv")


def test_class_weights_match_sklearn_balanced_up_to_scale() -> None:
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    import numpy as np

    y = [0] * 50 + [1] * 30 + [2] * 20
    reference = torch.tensor(sklearn.compute_class_weight("balanced", classes=np.arange(3), y=np.array(y)),
                             dtype=torch.float32)
    ours = class_weights(y, 3)
    torch.testing.assert_close(ours, reference / reference.mean())
    assert ours.mean().item() == pytest.approx(1.0)
    assert class_weights([0, 0, 2], 3)[1] == 0  # a class with no training rows gets no weight


def test_sampler_weights_give_every_class_equal_mass() -> None:
    y = [0] * 8 + [1] * 2
    w = sampler_weights(y, 2)
    assert w[:8].sum().item() == pytest.approx(w[8:].sum().item())
