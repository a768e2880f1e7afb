"""Decoder classification: last-real-token pooling on a real decoder, with left and right padding.

A sequence's logits must not depend on the batch it shares (other sequences, their lengths, the padding
side). The reference is the same sequence run alone, unpadded. Tiny random Llama and GPT-2 (offline).
"""

from __future__ import annotations

import pytest
import torch

from ftengine.backbones import wrap_hf_model
from ftengine.heads import ClassificationHead

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _decoder(model_type: str):
    from transformers import AutoConfig, AutoModel

    if model_type == "gpt2":
        config = AutoConfig.for_model("gpt2", n_embd=32, n_positions=64, n_layer=2, n_head=2, vocab_size=97)
    else:  # a sliding window shorter than the batch: the window must follow each row's own tokens
        config = AutoConfig.for_model("mistral", vocab_size=97, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, sliding_window=4, pad_token_id=0)
    torch.manual_seed(0)
    return wrap_hf_model(AutoModel.from_config(config).eval()).eval()


def _batch(sequences: list[list[int]], side: str) -> dict[str, torch.Tensor]:
    width = max(map(len, sequences))
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, cols] = torch.tensor(seq)
        mask[row, cols] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("model_type", ["mistral", "gpt2"])
@torch.no_grad()
def test_batch_composition_does_not_change_logits(model_type):
    backbone = _decoder(model_type)
    torch.manual_seed(1)
    head = ClassificationHead(backbone.feature_dim, 3, pooling="last").eval()
    g = torch.Generator().manual_seed(2)
    target = torch.randint(5, 97, (6,), generator=g).tolist()
    alone = head(backbone(_batch([target], "right")))[0]
    for side in ("right", "left"):
        for mates in ([[7, 8]], [torch.randint(5, 97, (11,), generator=g).tolist(), [9]]):
            batch = _batch([*mates, target], side)
            logits = head(backbone(batch))
            torch.testing.assert_close(logits[-1], alone, **TOL)
    # The pooled token is the last real one: a different last token changes the logits.
    changed = head(backbone(_batch([[*target[:-1], target[-1] + 1]], "left")))[0]
    assert not torch.allclose(changed, alone)
