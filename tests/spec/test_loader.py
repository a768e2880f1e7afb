"""Spec loading: valid files, overrides, and the exact text of the important problems."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from spec_helpers import MINIMAL, problems, write

from ftengine.errors import SpecError
from ftengine.spec import Spec, load_spec, resolve_path, validate_spec


@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
def test_minimal_spec_fills_defaults(tmp_path: Path, name: str) -> None:
    spec = load_spec(write(tmp_path, MINIMAL, name))
    assert spec.backbone.kind == "hf"
    assert spec.freeze.preset == "head_then_full"
    assert spec.training.batch_size == 32
    assert spec.training.early_stopping.mode == "max"
    # A dump validates back to an equal spec (what the runtime writes as spec.resolved.yaml).
    assert validate_spec(spec.model_dump(mode="json")) == spec


def test_overrides_are_applied_and_typed(tmp_path: Path) -> None:
    data = {**MINIMAL, "freeze": {"stages": [{"trainable": ["head"], "epochs": 1}, {"trainable": ["all"]}]}}
    spec = load_spec(write(tmp_path, data), ["training.epochs=7", "freeze.stages.1.epochs=4", "optimizer.betas=[0.8, 0.9]"])
    assert spec.training.epochs == 7
    assert spec.freeze.stages[1].epochs == 4
    assert spec.optimizer.betas == (0.8, 0.9)


def test_list_items_are_overridden_as_the_error_messages_name_them(tmp_path: Path) -> None:
    data = {**MINIMAL, "freeze": {"stages": [{"trainable": ["head"], "epochs": 1}, {"trainable": ["all"]}]}}
    spec = load_spec(write(tmp_path, data), ["freeze.stages[1].epochs=4", "freeze.stages[0].trainable[0]=all"])
    assert spec.freeze.stages[1].epochs == 4 and spec.freeze.stages[0].trainable == ["all"]


@pytest.mark.parametrize(("override", "problem"), [
    ("freeze.stages[2].epochs=1", "'freeze.stages' has 2 item(s) (got index 2); use an index from 0 to 1"),
    ("freeze.stages.epochs=1", "'freeze.stages' is a list; pick an item by index, e.g. freeze.stages[0].epochs"),
    ("training[0]=1", "'training' is a mapping, not a list; name one of its keys, not [0]"),
    ("training.epochs.max=1", "'training.epochs' is a value (2), not a mapping or list; check the key path"),
    ("training..epochs=1", "expected key.path=value with names and list indexes, e.g. freeze.stages[1].epochs=2"),
])
def test_an_override_that_misses_the_spec_says_where(tmp_path: Path, override: str, problem: str) -> None:
    data = {**MINIMAL, "training": {"epochs": 2},
            "freeze": {"stages": [{"trainable": ["head"], "epochs": 1}, {"trainable": ["all"]}]}}
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, data), [override])
    assert err.value.problems == [f"override '{override}': {problem}"]


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    with pytest.raises(Exception):
        spec.training.epochs = 9  # type: ignore[misc]


def test_every_problem_is_reported_once_per_line(tmp_path: Path) -> None:
    bad = {
        "backbone": {"kind": "hff", "source": "x"},
        "head": {"kind": "linear", "poolin": "mean"},
        "data": {"kind": "text", "train": "a.csv", "split": {"validation": 0.6, "test": 0.5}},
        "freeze": {"stages": [{"trainable": [], "epochs": 0}]},
        "optimizer": {"lr": -1},
        "training": {"device": "gpu"},
    }
    assert problems(tmp_path, bad) == [
        "backbone.kind: not an accepted value (got 'hff'); did you mean 'hf'?",
        "head.poolin: unknown key (got 'mean'); did you mean 'pooling'?",
        "data.split: validation + test fractions leave no training rows (got 0.6 + 0.5); keep the sum below 1",
        "freeze.stages[0].trainable: must not be empty (got []); give at least 1 item(s)",
        "freeze.stages[0].epochs: out of range (got 0); use a value >= 1",
        "optimizer.lr: out of range (got -1); use a value > 0.0",
        "training.device: unknown device (got 'gpu'); use auto, cpu, cuda or cuda:N",
    ]


def test_missing_sections_and_kind(tmp_path: Path) -> None:
    assert problems(tmp_path, {"backbone": {"source": "x"}}) == [
        "backbone.kind: missing 'kind' (got keys ['source']); add kind: one of the section's kinds (see `ftengine schema`)",
        "data: required key is missing; add it",
    ]


def test_unknown_top_level_key_lists_known_sections(tmp_path: Path) -> None:
    lines = problems(tmp_path, {**MINIMAL, "optimiser": {"lr": 1e-3}})
    assert lines == ["optimiser: unknown key (got a mapping); did you mean 'optimizer'?"]


def test_freeze_needs_preset_or_stages(tmp_path: Path) -> None:
    lines = problems(tmp_path, {**MINIMAL, "freeze": {"preset": "full_finetune", "stages": [{"trainable": ["all"]}]}})
    assert lines == ["freeze: give either preset or stages, not both (got preset 'full_finetune' and 1 stages)"]


def test_cross_section_modality_mismatch(tmp_path: Path) -> None:
    data = {"backbone": {"kind": "torchvision", "arch": "resnet18"}, "data": {"kind": "text", "train": "t.csv"}}
    assert problems(tmp_path, data) == [
        "data.kind: text data needs a text backbone (got data kind 'text' with backbone kind 'torchvision'); "
        "use backbone kind hf, or image data"
    ]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("backbone:\n  kind: hf\n  source: [unclosed\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.problems[0].startswith(f"{path}:4:")
    assert "invalid YAML" in err.value.problems[0]


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="expected key.path=value"):
        load_spec(write(tmp_path, MINIMAL), ["training.epochs"])


def test_schema_carries_docstring_descriptions() -> None:
    schema = Spec.model_json_schema()
    training = schema["$defs"]["TrainingSpec"]["properties"]
    assert "accumulated" in training["grad_accum_steps"]["description"]
    assert set(schema["properties"]) >= {"backbone", "head", "data", "freeze", "optimizer", "schedule", "training", "output"}


def test_package_paths_resolve_without_import(tmp_path: Path) -> None:
    assert resolve_path("pkg:json/decoder.py").is_file()
    assert resolve_path("data/x.csv", tmp_path) == tmp_path / "data" / "x.csv"
    with pytest.raises(FileNotFoundError, match="pip install no-such-pkg"):
        resolve_path("pkg:no_such_pkg/x")


def test_yaml_on_off_words_are_not_booleans(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "cache:\n  enabled: off\n")
    assert load_spec(path).cache.enabled == "off"
    assert load_spec(write(tmp_path, MINIMAL), ["cache.enabled=on"]).cache.enabled == "on"
