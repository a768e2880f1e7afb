"""Selector matching and the problem text for selectors that match nothing."""

from __future__ import annotations

import pytest

from ftengine.planner.selectors import compress_list, compress_ranges, select

BERT = ["embeddings", *(f"encoder.layer.{i}" for i in range(6)), "pooler"]
RESNET = ["stem", "layer1", "layer2", "layer3", "layer4"]
EFFNET = ["stem", *(f"_blocks.{i}" for i in range(16)), "top"]


@pytest.mark.parametrize(("selector", "names", "expected"), [
    ("encoder.layer.3", BERT, ["encoder.layer.3"]),
    ("encoder.layer.4-5", BERT, ["encoder.layer.4", "encoder.layer.5"]),
    ("encoder.layer.0-0", BERT, ["encoder.layer.0"]),
    ("_blocks.10-15", EFFNET, [f"_blocks.{i}" for i in range(10, 16)]),
    ("layer3-4", RESNET, ["layer3", "layer4"]),
    ("encoder.*", BERT, [f"encoder.layer.{i}" for i in range(6)]),
    ("layer?", RESNET, RESNET[1:]),
    (r"re:encoder\.layer\.[0-2]", BERT, ["encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]),
    ("re:.*er", BERT, ["pooler"]),  # the regex must match the whole name
    ("all", RESNET, [*RESNET, "head"]),
    ("backbone", RESNET, RESNET),
    ("head", RESNET, ["head"]),
    ("*", RESNET, [*RESNET, "head"]),
])
def test_selector_matches(selector: str, names: list[str], expected: list[str]) -> None:
    found = select(selector, names)
    assert found.problem is None
    assert list(found.groups) == expected


def test_unknown_numbered_group_suggests_nearest_in_family() -> None:
    found = select("encoder.layer.7", BERT)
    assert found.groups == ()
    assert found.problem == ("no layer group 'encoder.layer.7' (backbone has encoder.layer.0 .. encoder.layer.5); "
                             "did you mean 'encoder.layer.5'?")


def test_typo_suggests_close_name_and_lists_groups() -> None:
    assert select("poolr", BERT).problem == (
        "no layer group 'poolr' (groups: embeddings, encoder.layer.0 .. encoder.layer.5, pooler, head); "
        "did you mean 'pooler'?")
    assert select("encodr.layer.3", BERT).problem.endswith("did you mean 'encoder.layer.3'?")


def test_range_past_the_end_keeps_existing_and_suggests_clamped_range() -> None:
    found = select("encoder.layer.4-7", BERT)
    assert found.groups == ("encoder.layer.4", "encoder.layer.5")
    assert found.problem == ("range 'encoder.layer.4-7' reaches past the backbone: no encoder.layer.6, encoder.layer.7 "
                             "(backbone has encoder.layer.0 .. encoder.layer.5); did you mean 'encoder.layer.4-5'?")


def test_range_entirely_outside() -> None:
    found = select("layer6-9", RESNET)
    assert found.groups == ()
    assert found.problem.endswith("(backbone has layer1 .. layer4); use numbers 1-4")


def test_backwards_range() -> None:
    assert select("encoder.layer.5-4", BERT).problem == \
        "range 'encoder.layer.5-4' runs backwards (got start 5 > end 4); write 'encoder.layer.4-5'"


def test_range_over_unknown_family() -> None:
    assert select("decoder.layer.1-2", BERT).problem.startswith("no layer group 'decoder.layer.1-2' (groups: ")


def test_glob_and_regex_matching_nothing() -> None:
    assert select("decoder.*", BERT).problem.startswith("glob 'decoder.*' matches no layer group (groups: embeddings,")
    assert select("re:layer", BERT).problem.startswith("regex 'layer' matches no whole layer group name")
    bad = select("re:encoder.(", BERT).problem
    assert bad.startswith("invalid regular expression (got 'encoder.(': missing ), unterminated subpattern")
    assert bad.endswith("fix the pattern after 're:'")


def test_compress_ranges_is_selector_syntax() -> None:
    picked = ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2", "encoder.layer.5", "head"]
    assert compress_ranges(picked, [*BERT, "head"]) == "embeddings, encoder.layer.0-2, encoder.layer.5, head"
    assert compress_ranges(["layer4", "layer3"], RESNET) == "layer3-4"
    # every part of the summary selects exactly what was summarised
    for part in compress_ranges(picked[1:4], BERT).split(", "):
        assert list(select(part, BERT).groups) == picked[1:4]


def test_compress_list() -> None:
    assert compress_list([*BERT, "head"]) == "embeddings, encoder.layer.0 .. encoder.layer.5, pooler, head"
    assert compress_list(["layer1", "layer2"]) == "layer1, layer2"
    assert compress_list(EFFNET) == "stem, _blocks.0 .. _blocks.15, top"
