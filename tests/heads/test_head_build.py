"""build_head: pooling resolution, shapes, parameter names, init, num_classes checks, a real MiniLM state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftengine.errors import DataError, PlanError
from ftengine.heads import ClassificationHead, build_head
from ftengine.spec import HeadSpec


def backbone(family: str = "encoder", dim: int = 16) -> SimpleNamespace:
    modality = "image" if family == "cnn" else "text"
    return SimpleNamespace(family=family, modality=modality, feature_dim=dim)


@pytest.mark.parametrize(("family", "want"), [("encoder", "mean"), ("decoder", "last"), ("cnn", "avg")])
def test_auto_pooling_by_family(family: str, want: str) -> None:
    assert build_head(HeadSpec(), backbone(family), 3).pooling == want


def test_linear_head_shapes_names_and_init() -> None:
    head = build_head(HeadSpec(dropout=0.0), backbone(dim=384), 5)
    assert [n for n, _ in head.named_parameters()] == ["classifier.weight", "classifier.bias"]
    w = head.classifier.weight
    assert w.shape == (5, 384) and head.classifier.bias.abs().sum() == 0
    assert w.abs().max() <= 0.04 + 1e-6 and 0.01 < w.std().item() < 0.02  # trunc normal(0.02) cut at 2 std
    state = {"hidden": torch.randn(4, 7, 384), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    logits = head(state)
    assert logits.shape == (4, 5)
    torch.testing.assert_close(logits, state["hidden"].mean(1) @ w.T)


def test_mlp_head_structure_and_forward() -> None:
    head = build_head(HeadSpec(kind="mlp", hidden=[32, 8], activation="relu", dropout=0.0, pooling="max"),
                      backbone("cnn", dim=12), 3)
    assert [n for n, _ in head.named_parameters()] == [
        "hidden.0.linear.weight", "hidden.0.linear.bias", "hidden.1.linear.weight", "hidden.1.linear.bias",
        "classifier.weight", "classifier.bias"]
    x = torch.randn(2, 12, 3, 3)
    h = torch.amax(x, dim=(2, 3))
    for block in head.hidden:
        h = torch.relu(h @ block.linear.weight.T + block.linear.bias)
    torch.testing.assert_close(head({"features": x}), h @ head.classifier.weight.T + head.classifier.bias)
    rebuilt = ClassificationHead(**head.config)
    rebuilt.load_state_dict(head.state_dict())
    torch.testing.assert_close(rebuilt({"features": x}), head({"features": x}))


def test_dropout_is_active_in_train_mode_only() -> None:
    head = build_head(HeadSpec(dropout=0.5), backbone(), 2)
    state = {"hidden": torch.randn(64, 3, 16), "attention_mask": torch.ones(64, 3)}
    head.eval()
    assert torch.equal(head(state), head(state))
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head(state), head(state))


def test_num_classes_and_pooling_errors() -> None:
    with pytest.raises(DataError) as err:
        build_head(HeadSpec(num_classes=4), backbone(), 3)
    assert str(err.value) == ("head.num_classes: the training data has 3 labels (got 4); set head.num_classes: 3 "
                              "or leave it null to take it from the data")
    assert build_head(HeadSpec(num_classes=4), backbone(), None).num_classes == 4
    with pytest.raises(PlanError, match=r"^head.num_classes: unknown number of classes"):
        build_head(HeadSpec(), backbone(), None)
    with pytest.raises(PlanError) as err:
        build_head(HeadSpec(pooling="avg"), backbone(), 2)
    assert str(err.value) == ("head.pooling: 'avg' does not apply to a text backbone (got 'avg'); use auto (mean) or "
                              "one of cls, mean, last, pooler")
    with pytest.raises(PlanError, match=r"'cls' does not apply to a image backbone .* one of avg, max$"):
        build_head(HeadSpec(pooling="cls"), backbone("cnn"), 2)


def test_mean_pooling_on_minilm_matches_sentence_transformers_recipe(minilm_model, minilm_tokenizer) -> None:
    """all-MiniLM-L6-v2's model card pools token embeddings by the attention-masked mean; padding must not matter."""
    texts = ["a short one", "a considerably longer sentence with quite a few more tokens in it"]
    batch = minilm_tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm_model(**batch).last_hidden_state
        alone = [minilm_model(**minilm_tokenizer([t], return_tensors="pt")).last_hidden_state[0].mean(0) for t in texts]
    head = build_head(HeadSpec(dropout=0.0), SimpleNamespace(family="encoder", modality="text", feature_dim=384), 2)
    pooled = head.features({"hidden": hidden, "attention_mask": batch["attention_mask"]})
    torch.testing.assert_close(pooled, torch.stack(alone), atol=1e-5, rtol=1e-4)
