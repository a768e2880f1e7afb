"""`model_state`: what exports and checkpoints write, without copies where the bytes are a parameter's own."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ftengine.runtime.checkpoint import model_state


def test_flat_buffer_views_are_written_without_copies_and_tied_weights_are_copied(tmp_path) -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False), nn.Linear(10, 3))
    model[1].weight = model[0].weight  # tied: two names, one parameter
    flat = torch.zeros(sum(p.numel() for p in model.parameters()))
    offset = 0
    for p in model.parameters():  # as the flat optimizer does: every parameter a view of one buffer
        flat[offset:offset + p.numel()].copy_(p.detach().reshape(-1))
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    state = model_state(model)
    assert state["0.weight"].data_ptr() == model[0].weight.data_ptr()  # the parameter's own bytes, not a copy
    assert state["2.weight"].data_ptr() == model[2].weight.data_ptr()
    assert state["1.weight"].data_ptr() != state["0.weight"].data_ptr()  # the tied name: a copy
    save_file(state, str(tmp_path / "model.safetensors"))  # refuses two names over one memory, or shared storages
    loaded = load_file(str(tmp_path / "model.safetensors"))
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "model.safetensors").stat().st_size < flat.numel() * 4 + 40 + 2000  # no buffer dragged along
