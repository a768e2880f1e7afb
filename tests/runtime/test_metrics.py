"""Classification metrics against scikit-learn (the reference implementation) and hand-counted cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftengine.runtime.metrics import ClassificationMeter, classification_metrics, confusion_matrix

skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference (pip install -e '.[examples]')")


def random_case(n: int, c: int, seed: int, skip_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    if skip_class is not None:  # a class that is never predicted and has no examples
        y[y == skip_class] = (skip_class + 1) % c
        p[p == skip_class] = (skip_class + 1) % c
    return y, p


@pytest.mark.parametrize(("n", "c", "seed", "skip"), [(500, 3, 0, None), (97, 7, 1, None), (200, 5, 2, 3), (1, 2, 3, None)])
def test_matches_sklearn(n: int, c: int, seed: int, skip: int | None) -> None:
    y, p = random_case(n, c, seed, skip)
    labels = [f"c{i}" for i in range(c)]
    m = classification_metrics(y, p, labels)
    classes = list(range(c))
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, labels=classes, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, p, labels=classes, average="weighted", zero_division=0))
    assert m["macro_precision"] == pytest.approx(prec.mean()) and m["macro_recall"] == pytest.approx(rec.mean())
    for i, name in enumerate(labels):
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((prec[i], rec[i], f1[i]))
        assert got["support"] == support[i]
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p, labels=classes).tolist()
    assert m["num_examples"] == n and m["labels"] == labels


def test_hand_counted_case() -> None:
    # true: a a a b b c ; pred: a a b b c c
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                   "support": 3}
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5) and m["per_class"]["c"]["recall"] == 1.0


def test_unlabelled_rows_are_left_out_and_bad_ids_rejected() -> None:
    cm = confusion_matrix(torch.tensor([0, -1, 1]), torch.tensor([0, 1, 1]), 2)
    assert cm.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="class ids must lie in 0..1"):
        confusion_matrix([0, 2], [0, 0], 2)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 2)


def test_meter_accumulates_batches_like_one_pass() -> None:
    y, p = random_case(300, 4, 5)
    logits = torch.nn.functional.one_hot(torch.tensor(p), 4).float() * 3 + torch.randn(300, 4) * 0.01
    labels = torch.tensor(y)
    meter = ClassificationMeter(["a", "b", "c", "d"])
    losses = []
    for chunk in torch.arange(300).split(64):
        loss = torch.nn.functional.cross_entropy(logits[chunk], labels[chunk])
        meter.update(logits[chunk], labels[chunk], loss=loss)
        losses.append(loss * len(chunk))
    out = meter.compute()
    whole = classification_metrics(labels, logits.argmax(1), ["a", "b", "c", "d"])
    assert out["confusion_matrix"] == whole["confusion_matrix"] and out["macro_f1"] == whole["macro_f1"]
    assert out["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    meter.reset()
    assert meter.compute()["num_examples"] == 0 and "loss" not in meter.compute()
