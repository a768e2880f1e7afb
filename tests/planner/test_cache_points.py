"""Cache points: the frozen-prefix boundary, whether caching is correct there, and its size."""

from __future__ import annotations

import pytest
from planner_fakes import FakeBackbone, image_spec, make_spec

from ftengine.errors import PlanError
from ftengine.planner import plan

GRADUAL = {"preset": "gradual_unfreeze", "groups_per_stage": 2}


def test_text_boundaries_and_bytes(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze=GRADUAL, data={"kind": "text", "train": "t.csv", "max_length": 64}), bert)
    assert [s.cache.boundary for s in graph.stages] == [8, 5, 3, 1, 0]
    assert [s.cache.allowed for s in graph.stages] == [True, True, True, True, False]
    # (64 tokens, 8 hidden) fp32 per example
    assert graph.stages[1].cache.bytes_per_example == 64 * 8 * 4
    assert graph.stages[-1].cache == graph.stages[-1].cache.__class__(
        0, False, "no frozen prefix: the first group (embeddings) trains", None)
    assert graph.cache_boundaries() == (1, 3, 5, 8)
    assert graph.example_len == 64


def test_bf16_halves_the_bytes(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "feature_extraction"}, cache={"dtype": "bf16"}), bert)
    assert graph.stages[0].cache.bytes_per_example == 128 * 8 * 2


def test_train_mode_dropout_in_the_prefix_rules_out_caching(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={**GRADUAL, "frozen_dropout": "train"}), bert)
    cache = graph.stages[1].cache
    assert not cache.allowed
    assert cache.reason == ("freeze.frozen_dropout is 'train' and embeddings, encoder.layer.0 .. encoder.layer.3 "
                            "use dropout")
    assert graph.cache_boundaries() == ()


def test_batchnorm_policy_matters_only_where_there_is_batchnorm(bert: FakeBackbone, resnet: FakeBackbone) -> None:
    assert plan(make_spec(freeze={**GRADUAL, "frozen_batchnorm": "train"}), bert).stages[1].cache.allowed
    cnn = plan(image_spec(freeze={"preset": "head_then_full", "frozen_batchnorm": "train"},
                          head={"num_classes": 3}), resnet)
    assert cnn.stages[0].cache.reason == ("freeze.frozen_batchnorm is 'train' and stem, layer1 .. layer4 update "
                                          "BatchNorm statistics")
    # dropout policy is irrelevant to a prefix without dropout
    ok = plan(image_spec(freeze={"preset": "head_then_full", "frozen_dropout": "train"}, head={"num_classes": 3}), resnet)
    assert ok.stages[0].cache.allowed
    assert ok.stages[0].cache.bytes_per_example == 512 * 2 * 2 * 4  # final (512, 2, 2) map, fp32


def test_every_stage_records_the_frozen_mode_policy_it_was_planned_with(bert: FakeBackbone) -> None:
    """The runtime sets frozen layers' modes from the stage alone, so the stage must say what cacheability assumed."""
    default = plan(make_spec(freeze=GRADUAL), bert)
    assert {(s.frozen_batchnorm, s.frozen_dropout) for s in default.stages} == {("eval", "eval")}
    train = plan(make_spec(freeze={**GRADUAL, "frozen_batchnorm": "train", "frozen_dropout": "train"}), bert)
    assert {(s.frozen_batchnorm, s.frozen_dropout) for s in train.stages} == {("train", "train")}
    assert train.to_dict()["stages"][0]["frozen_dropout"] == "train"


def test_random_augmentation_and_cache_off(resnet: FakeBackbone) -> None:
    aug = image_spec(data={"kind": "image_folder", "train": "imgs", "augment": {"hflip": True}},
                     freeze={"preset": "feature_extraction"}, head={"num_classes": 3})
    assert plan(aug, resnet).stages[0].cache.reason == "random augmentation (data.augment) changes the inputs every epoch"
    off = image_spec(cache={"enabled": "off"}, freeze={"preset": "feature_extraction"}, head={"num_classes": 3})
    point = plan(off, resnet).stages[0].cache
    assert (point.allowed, point.reason, point.boundary) == (False, "cache.enabled is off", 5)


def test_cache_on_fails_when_a_frozen_prefix_cannot_be_cached(bert: FakeBackbone) -> None:
    spec = make_spec(cache={"enabled": "on"}, freeze={"preset": "head_then_full", "frozen_dropout": "train"})
    with pytest.raises(PlanError) as err:
        plan(spec, bert)
    assert err.value.problems == [
        "cache.enabled: stage 0 (head) cannot cache its frozen prefix: freeze.frozen_dropout is 'train' and "
        "embeddings, encoder.layer.0 .. encoder.layer.5 use dropout (got 'on'); set cache.enabled: auto to run "
        "such stages uncached"]


def test_cache_on_fails_when_nothing_is_frozen(bert: FakeBackbone) -> None:
    with pytest.raises(PlanError) as err:
        plan(make_spec(cache={"enabled": "on"}, freeze={"preset": "full_finetune"}), bert)
    assert err.value.problems == [
        "cache.enabled: no stage has a frozen prefix to cache (got 'on' while every stage trains the first group, "
        "embeddings); set cache.enabled: auto, or freeze the lower groups"]
