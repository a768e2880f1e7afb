"""Presets and written-out stages: which groups train in which stage, for how long."""

from __future__ import annotations

from planner_fakes import FakeBackbone, image_spec, make_spec

from ftengine.planner import plan

LAYERS = [f"encoder.layer.{i}" for i in range(6)]


def trainable(graph) -> list[list[str]]:
    return [list(s.trainable) for s in graph.stages]


def test_feature_extraction_trains_only_the_head(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "feature_extraction"}, training={"epochs": 4}), bert)
    assert trainable(graph) == [["head"]]
    stage = graph.stages[0]
    assert (stage.name, stage.epochs, stage.frozen_prefix) == ("head", 4, 8)
    # every group is listed, frozen ones with trainable False
    assert [g.name for g in stage.groups] == ["embeddings", *LAYERS, "pooler", "head"]
    assert stage.trainable_params == 8 * 3 + 3  # linear head: 8x3 weight + 3 biases


def test_full_finetune_trains_everything_but_the_unused_pooler(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "full_finetune"}), bert)
    assert trainable(graph) == [["embeddings", *LAYERS, "head"]]
    assert graph.stages[0].epochs == 3  # training.epochs default
    assert graph.stages[0].trainable_params == 1000 + 600 + 27
    assert graph.total_params == 1000 + 600 + 10 + 27


def test_pooler_trains_when_the_head_reads_it(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "full_finetune"}, head={"pooling": "pooler"}), bert)
    assert trainable(graph) == [["embeddings", *LAYERS, "pooler", "head"]]
    assert not graph.warnings


def test_head_then_full(bert: FakeBackbone) -> None:
    spec = make_spec(freeze={"preset": "head_then_full", "head_epochs": 2, "stage_epochs": 5, "unfrozen_lr_scale": 0.1})
    graph = plan(spec, bert)
    assert trainable(graph) == [["head"], ["embeddings", *LAYERS, "head"]]
    assert [(s.name, s.epochs) for s in graph.stages] == [("head", 2), ("full", 5)]
    assert graph.stages[1].group("head").lr == spec.optimizer.lr * 0.1


def test_gradual_unfreeze_top_down_embeddings_last(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "gradual_unfreeze", "groups_per_stage": 2, "stage_epochs": 2}), bert)
    assert [s.name for s in graph.stages] == ["head", "top2", "top4", "top6", "all"]
    assert trainable(graph) == [
        ["head"],
        ["encoder.layer.4", "encoder.layer.5", "head"],
        [*LAYERS[2:], "head"],
        [*LAYERS, "head"],
        ["embeddings", *LAYERS, "head"],
    ]
    assert [s.epochs for s in graph.stages] == [1, 2, 2, 2, 2]
    assert [s.frozen_prefix for s in graph.stages] == [8, 5, 3, 1, 0]


def test_gradual_unfreeze_max_unfrozen_keeps_embeddings_frozen(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"preset": "gradual_unfreeze", "groups_per_stage": 4, "max_unfrozen": 6}), bert)
    assert trainable(graph) == [["head"], [*LAYERS[2:], "head"], [*LAYERS, "head"]]
    assert [s.name for s in graph.stages] == ["head", "top4", "top6"]


def test_gradual_unfreeze_on_a_cnn(resnet: FakeBackbone) -> None:
    graph = plan(image_spec(freeze={"preset": "gradual_unfreeze"}, head={"num_classes": 5}), resnet)
    assert trainable(graph) == [["head"], ["layer4", "head"], ["layer3", "layer4", "head"],
                                ["layer2", "layer3", "layer4", "head"],
                                ["layer1", "layer2", "layer3", "layer4", "head"],
                                ["stem", "layer1", "layer2", "layer3", "layer4", "head"]]


def test_written_stages_with_selectors_and_plateau(bert: FakeBackbone) -> None:
    spec = make_spec(
        freeze={"stages": [
            {"name": "probe", "trainable": ["head"], "until_plateau": True, "epochs": 6},
            {"trainable": ["head", "encoder.layer.4-5"], "epochs": 1},
            {"trainable": ["re:encoder\\.layer\\.[0-5]", "head", "embeddings"]},
        ]},
        training={"epochs": 2, "early_stopping": {"patience": 3}},
    )
    graph = plan(spec, bert)
    assert [s.name for s in graph.stages] == ["probe", "stage1", "stage2"]
    assert [(s.epochs, s.until_plateau, s.patience) for s in graph.stages] == [(6, True, 3), (1, False, None), (2, False, None)]
    assert trainable(graph)[1] == ["encoder.layer.4", "encoder.layer.5", "head"]
    assert trainable(graph)[2] == ["embeddings", *LAYERS, "head"]


def test_plateau_patience_defaults() -> None:
    from planner_fakes import fake_bert

    stages = [{"trainable": ["head"], "until_plateau": True, "patience": 2}, {"trainable": ["all"], "until_plateau": True}]
    graph = plan(make_spec(freeze={"stages": stages}), fake_bert())
    assert [s.patience for s in graph.stages] == [2, 1]  # no early-stopping patience set: 1


def test_unused_pooler_is_skipped_by_ranges_and_all(bert: FakeBackbone) -> None:
    graph = plan(make_spec(freeze={"stages": [{"trainable": ["backbone", "head"]}]}), bert)
    assert "pooler" not in graph.stages[0].trainable
    assert graph.groups[-2].used is False
    assert graph.warnings == ("pooler never trains: the head pools with 'mean' and never reads it "
                              "(set head.pooling: pooler to use it)",)
