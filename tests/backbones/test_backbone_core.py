"""The Backbone wrapper itself: group bookkeeping and argument checks (tiny hand-made models)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from ftengine.backbones import Backbone, GroupDef
from ftengine.backbones.adapters import run_modules
from ftengine.backbones.backbone import image_boundary_shape


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 3), nn.Dropout(0.5), nn.Conv2d(4, 6, 1)))


def _group(name: str, *modules: str, first: bool = False) -> GroupDef:
    return GroupDef(name, modules, partial(run_modules, modules, first))


def _wrap(model: nn.Module, groups: list[GroupDef], **kwargs) -> Backbone:
    return Backbone(model, groups, modality="image", family="cnn", feature_dim=kwargs.pop("feature_dim", None),
                    boundary_shape_fn=image_boundary_shape, preprocessing={"image_size": 9}, **kwargs)


def test_groups_describe_parameters_and_stochasticity():
    backbone = _wrap(_model(), [_group("a", "0", first=True), _group("b", "1")])
    a, b = backbone.groups
    assert a.param_names == ("0.weight", "0.bias") and a.num_params == 4 * 3 * 9 + 4
    assert b.has_dropout and not a.has_dropout and not b.has_batchnorm
    assert backbone.feature_dim == 6  # measured: (6, 5, 5) leaves the last group
    assert [backbone.boundary_shape(k) for k in range(3)] == [(3, 9, 9), (4, 7, 7), (6, 5, 5)]
    with pytest.raises(KeyError, match=r"no layer group 'c' \(groups: a, b\)"):
        backbone.group_modules("c")
    with pytest.raises(IndexError, match=r"boundary_shape: index must be in 0..2 \(got 3\)"):
        backbone.boundary_shape(3)


def test_boundary_shape_keeps_train_mode_and_batchnorm_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    backbone = _wrap(model, [_group("a", "0", "1", first=True)]).train()
    before = model[1].running_mean.clone()
    assert backbone.boundary_shape(1, 5) == (4, 3, 3)
    assert backbone.training and model[1].training
    assert torch.equal(model[1].running_mean, before) and model[1].num_batches_tracked == 0


def test_nested_groups_must_cover_every_parameter():
    with pytest.raises(ValueError, match=r"^parameters in no layer group: 1.2.weight, 1.2.bias$"):
        _wrap(_model(), [_group("a", "0", first=True), _group("b", "1.0", "1.1")], feature_dim=6)
    with pytest.raises(ValueError, match=r"^duplicate layer group names: a$"):
        _wrap(_model(), [_group("a", "0", first=True), _group("a", "1")], feature_dim=6)


def test_tied_parameters_are_counted_once_and_never_split():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight  # tied inside one group: one parameter, one name
    backbone = Backbone(model, [GroupDef("a", ("0", "1"), lambda m, s, c: s), GroupDef("b", ("2",), lambda m, s, c: s)],
                        modality="image", family="cnn", feature_dim=4, boundary_shape_fn=image_boundary_shape)
    assert backbone.groups[0].param_names == ("0.weight", "0.bias", "1.bias")
    assert sum(g.num_params for g in backbone.groups) == sum(p.numel() for p in model.parameters()) == 3 * 4 * 4 - 16 + 12
    model[2].weight = model[0].weight  # tied across groups: freezing one group would half-freeze the other
    with pytest.raises(ValueError, match=r"^parameter '0.weight' is in layer groups 'a' and 'b'$"):
        Backbone(model, [GroupDef("a", ("0", "1"), lambda m, s, c: s), GroupDef("b", ("2",), lambda m, s, c: s)],
                 modality="image", family="cnn", feature_dim=4, boundary_shape_fn=image_boundary_shape)
