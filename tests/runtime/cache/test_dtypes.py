"""The cache's one dtype table (planner.cache.CACHE_DTYPES) agrees with torch and with the spec's choices."""

from __future__ import annotations

import typing

import torch

from ftengine.planner.cache import CACHE_DTYPES
from ftengine.runtime.cache.layout import DTYPES
from ftengine.spec.training import CacheSpec


def test_every_spec_choice_has_a_row():
    choices = typing.get_args(CacheSpec.model_fields["dtype"].annotation)
    assert set(choices) == set(CACHE_DTYPES) == set(DTYPES)


def test_bytes_per_element_are_torchs():
    for name, (torch_name, nbytes) in CACHE_DTYPES.items():
        assert DTYPES[name] is getattr(torch, torch_name)
        assert torch.empty((), dtype=DTYPES[name]).element_size() == nbytes
