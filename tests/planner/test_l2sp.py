"""L2-SP per-group strengths (`optimizer.l2sp.multipliers`), computed by hand from the formula in
ftengine/planner/l2sp.py; selector errors; describe; to_dict only with L2-SP on."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from planner_fakes import FakeBackbone, fake_bert, make_spec

from ftengine.errors import PlanError
from ftengine.planner import plan
from ftengine.planner.describe import describe

ADAPTED = ("encoder.layer.4", "encoder.layer.5")


def lora_bert() -> FakeBackbone:
    """fake_bert with peft-named LoRA weights (8 scalars each) in encoder.layer.4 and encoder.layer.5."""
    bb = fake_bert()
    bb.groups = [replace(g, param_names=(*g.param_names, f"{g.name}.attention.self.query.lora_A.default.weight"),
                         num_params=g.num_params + 8) if g.name in ADAPTED else g for g in bb.groups]
    bb.named_parameters = lambda: [(n, torch.zeros(8 if ".lora_" in n else 1)) for g in bb.groups
                                   for n in g.param_names]
    return bb


def l2sp(multipliers: dict[str, float], strength: float = 0.01, **sections) -> dict:
    return {"optimizer": {"weight_decay": 0.05, "l2sp": {"strength": strength, "dtype": "bf16",
                                                          "multipliers": multipliers}}, **sections}


def test_strength_is_the_product_of_every_matching_multiplier(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**l2sp({"embeddings": 10, "encoder.layer.4-5": 0.5, "encoder.layer.5": 3,
                                   "encoder.layer.1": 0})), bert)
    assert graph.l2sp is not None and graph.l2sp.dtype == "bf16" and graph.l2sp.strength == 0.01
    got = dict(graph.l2sp.groups)
    assert got == pytest.approx({"embeddings": 0.01 * 10, "encoder.layer.0": 0.01, "encoder.layer.1": 0.0,
                                 "encoder.layer.2": 0.01, "encoder.layer.3": 0.01, "encoder.layer.4": 0.01 * 0.5,
                                 "encoder.layer.5": 0.01 * 0.5 * 3})
    # the head never has a strength; the pooler is unused under mean pooling (it never trains)
    assert "head" not in got and "pooler" not in got
    assert graph.l2sp.strength_of("head") == 0.0 and graph.l2sp.strength_of("encoder.layer.1") == 0.0
    assert graph.l2sp.anchored
    # L2-SP does not change the stages' weight decay (the runtime swaps it for L2-SP on anchored groups)
    assert {g.weight_decay for g in graph.stages[0].groups if g.name != "pooler"} == {0.05}


def test_without_multipliers_every_backbone_group_gets_the_strength(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**l2sp({})), bert)
    assert dict(graph.l2sp.groups) == {n: 0.01 for n in ["embeddings", *(f"encoder.layer.{i}" for i in range(6))]}


def test_all_and_backbone_selectors_skip_the_head(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**l2sp({"all": 2, "backbone": 3})), bert)
    assert [s for _, s in graph.l2sp.groups] == pytest.approx([0.01 * 2 * 3] * 7)
    assert graph.l2sp.strength_of("head") == 0.0


def test_multipliers_of_zero_everywhere_anchor_nothing_and_say_so(bert: FakeBackbone) -> None:
    graph = plan(make_spec(**l2sp({"backbone": 0})), bert)
    assert not graph.l2sp.anchored
    assert any(w.startswith("optimizer.l2sp: every group's multiplier is 0") for w in graph.warnings)


def test_adapter_groups_are_never_anchored() -> None:
    spec = make_spec(adapters={"kind": "lora", "targets": ["encoder.layer.4-5"]}, **l2sp({"encoder.*": 2}))
    graph = plan(spec, lora_bert())
    assert "lora:encoder.layer.5" in graph.group_names
    got = dict(graph.l2sp.groups)
    assert not any(n.startswith("lora:") for n in got)
    assert got["encoder.layer.5"] == pytest.approx(0.02)  # the base weights keep theirs (they never train)


@pytest.mark.parametrize(("key", "expected"), [
    ("encoder.layer.9", "optimizer.l2sp.multipliers['encoder.layer.9']: no layer group 'encoder.layer.9' (backbone "
                        "has encoder.layer.0 .. encoder.layer.5); did you mean 'encoder.layer.5'?"),
    ("encoder.layer.4-7", "optimizer.l2sp.multipliers['encoder.layer.4-7']: range 'encoder.layer.4-7' reaches past "
                          "the backbone: no encoder.layer.6, encoder.layer.7 (backbone has encoder.layer.0 .. "
                          "encoder.layer.5); did you mean 'encoder.layer.4-5'?"),
    ("head", "optimizer.l2sp.multipliers['head']: selects no pretrained backbone group, only head (got 'head'); "
             "L2-SP anchors neither the head nor LoRA adapters (new weights) nor unused groups (never trained): "
             "name backbone groups, e.g. 'encoder.layer.5'"),
    ("pooler", "optimizer.l2sp.multipliers['pooler']: selects no pretrained backbone group, only pooler"),
])
def test_bad_selectors_are_plan_errors(bert: FakeBackbone, key: str, expected: str) -> None:
    with pytest.raises(PlanError) as err:
        plan(make_spec(**l2sp({key: 2.0, "embeddings": 1.0})), bert)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(expected)


def test_adapter_only_selector_is_a_plan_error() -> None:
    spec = make_spec(adapters={"kind": "lora", "targets": ["encoder.layer.4-5"]}, **l2sp({"lora:*": 2}))
    with pytest.raises(PlanError, match=r"multipliers\['lora:\*'\]: selects no pretrained backbone group, only "
                                        r"lora:encoder.layer.4, lora:encoder.layer.5"):
        plan(spec, lora_bert())


def test_to_dict_has_l2sp_only_when_on(bert: FakeBackbone) -> None:
    assert "l2sp" not in plan(make_spec(), bert).to_dict()
    out = plan(make_spec(**l2sp({"encoder.layer.0-4": 0})), bert).to_dict()["l2sp"]
    assert out == {"dtype": "bf16", "strength": 0.01, "groups": {
        "embeddings": 0.01, **{f"encoder.layer.{i}": 0.0 for i in range(5)}, "encoder.layer.5": 0.01}}


def test_describe_merges_equal_neighbours_top_down(bert: FakeBackbone) -> None:
    spec = make_spec(freeze={"stages": [{"trainable": ["head", "encoder.layer.1-5"]}]},
                     **l2sp({"encoder.layer.4-5": 0.5, "encoder.layer.1": 0}))
    text = describe(plan(spec, bert))
    section = text.split("L2-SP (")[1].split("\n\n")[0].splitlines()
    assert section[0].startswith("decay toward the starting weights, strength 1.00e-02 x multipliers")
    assert section[1] == "  anchors: bf16, 2 B per parameter of the groups that train"
    rows = [[cell.strip() for cell in line.strip().split("  ", 1)] for line in section[3:]]
    assert rows == [["encoder.layer.4-5", "5.00e-03"], ["encoder.layer.2-3", "1.00e-02"],
                    ["encoder.layer.1", "off (weight_decay)"], ["embeddings, encoder.layer.0", "- (frozen throughout)"]]
    assert "L2-SP" not in describe(plan(make_spec(), bert))
