"""The exported model: `model/backbone/` reloads with transformers and holds the run's final weights (written from
storage slices of the flat buffer, not clones)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def test_backbone_folder_reloads_with_the_trained_weights(reference: Path, tiny_bert: Path) -> None:
    from transformers import AutoModel

    final = load_file(str(reference / "model" / "model.safetensors"))
    exported = AutoModel.from_pretrained(str(reference / "model" / "backbone")).state_dict()
    pretrained = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
    assert exported.keys() == pretrained.keys()
    for key, value in exported.items():
        assert torch.equal(value, final[f"backbone.{key}"]), key


def test_base_state_shares_the_weights_instead_of_copying_them() -> None:
    """No second copy of the model while it is written (a clone of MiniLM is 87 MB, the end of a cached run's peak)."""
    from transformers import BertConfig, BertModel

    from ftengine.runtime.adapters import base_state

    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=16))
    own = model.state_dict()
    state = base_state(model)
    assert state.keys() == own.keys()
    assert all(state[k].data_ptr() == own[k].data_ptr() and torch.equal(state[k], own[k]) for k in own)
