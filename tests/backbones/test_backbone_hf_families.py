"""hf families beyond BERT/GPT-2: forward_from(k) equals the model's own forward at every boundary.

Tiny random-init configs (``hf_tiny``). The reference is the transformers model's forward; the states
entering each group are captured from that same forward with pre-hooks. Text batches hold padding
(decoders: left and right); decoders are compared with the position ids ``generate`` gives padded rows
(``cumsum(mask) - 1``), on real tokens (padding positions hold no meaningful output).
"""

from __future__ import annotations

import pytest
import torch
from backbone_specs import entering_states
from hf_tiny import DECODERS, IMAGE, TEXT, VOCAB, tiny_model

from ftengine.backbones import wrap_hf_model

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _padded(side: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, real in ((0, 6), (2, 3)):  # row 1 is unpadded
        pad = slice(real, None) if side == "right" else slice(0, 9 - real)
        mask[row, pad] = 0
        ids[row, pad] = 0
    return {"input_ids": ids, "attention_mask": mask}


# Encoders are padded on the right; decoders on either side.
@pytest.mark.parametrize("name, side", [(n, "right") for n in sorted(TEXT)] + [(n, "left") for n in DECODERS])
@torch.no_grad()
def test_text_family_every_boundary(name, side):
    decoder = name in DECODERS
    model = tiny_model(name)
    backbone = wrap_hf_model(model)
    batch = _padded(side)
    mask = batch["attention_mask"]
    extra = {}
    if decoder:  # GenerationMixin's position ids for padded rows (real tokens count from 0)
        extra["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    ref, entering = entering_states(backbone, model, **batch, **extra)
    assert sorted(entering) == list(range(1, len(backbone.groups)))
    real = mask.bool() if decoder else torch.ones_like(mask, dtype=torch.bool)
    for k in range(len(backbone.groups)):
        state = batch if k == 0 else {"hidden": entering[k], "attention_mask": mask}
        out = backbone.forward_from(k, state)
        torch.testing.assert_close(out["hidden"][real], ref.last_hidden_state[real], **TOL)
    assert backbone.family == ("decoder" if decoder else "encoder")
    assert (backbone.modality, backbone.feature_dim) == ("text", model.config.hidden_size)
    assert backbone.group_names[0] == "embeddings"
    assert sum(g.num_params for g in backbone.groups) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["llama", "modernbert", "deberta-v3", "gemma3-bidirectional"])
@torch.no_grad()
def test_eager_attention_masks(name):
    # Eager attention takes additive float masks, sdpa boolean ones: both must come out the same way.
    model = tiny_model(name, attn="eager")
    backbone = wrap_hf_model(model)
    batch = _padded("right")
    ref, entering = entering_states(backbone, model, **batch)
    real = batch["attention_mask"].bool()
    out = backbone.forward_from(2, {"hidden": entering[2], "attention_mask": batch["attention_mask"]})
    torch.testing.assert_close(out["hidden"][real], ref.last_hidden_state[real], **TOL)


def test_group_names_follow_the_model():
    assert wrap_hf_model(tiny_model("llama")).group_names == ["embeddings", "layers.0", "layers.1", "layers.2", "norm"]
    assert wrap_hf_model(tiny_model("modernbert")).group_names[-1] == "final_norm"
    assert wrap_hf_model(tiny_model("distilbert")).group_names[1] == "transformer.layer.0"
    deberta = wrap_hf_model(tiny_model("deberta-v2-conv"))
    assert deberta.groups[0].module_names == ("embeddings", "encoder.rel_embeddings")
    assert deberta.groups[1].module_names == ("encoder.layer.0", "encoder.conv")
    assert wrap_hf_model(tiny_model("deberta-v3")).groups[0].module_names == \
        ("embeddings", "encoder.rel_embeddings", "encoder.LayerNorm")


@pytest.mark.parametrize("name", sorted(IMAGE))
@torch.no_grad()
def test_image_family_every_boundary(name):
    model = tiny_model(name)
    backbone = wrap_hf_model(model)
    side = model.config.image_size
    pixels = torch.randn(2, 3, side, side)
    ref, entering = entering_states(backbone, model, pixel_values=pixels)
    if name == "convnext":  # its layernorm gets the spatial mean; the group gets the last stage's maps
        entering[len(backbone.groups) - 1] = ref.last_hidden_state
        expected = ref.pooler_output
    else:  # [CLS] after the final norm, as ViTForImageClassification reads it
        expected = ref.last_hidden_state[:, 0]
    for k in range(len(backbone.groups)):
        state = {"pixels": pixels} if k == 0 else {"features": entering[k]}
        torch.testing.assert_close(backbone.forward_from(k, state)["features"], expected, **TOL)
    assert backbone.modality == "image"
    assert backbone.family == ("cnn" if name == "convnext" else "vit")
    assert backbone.feature_dim == expected.shape[1]
    assert backbone.preprocessing == {"image_size": side, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert backbone.boundary_shape(1) == tuple(entering[1].shape[1:])


@pytest.mark.parametrize("name", ["llama", "gpt2"])
@torch.no_grad()
def test_padding_side_and_batch_mates_do_not_change_hidden_states(name):
    from backbone_specs import tiny_config
    from transformers import AutoModel

    torch.manual_seed(0)
    model = tiny_model(name) if name != "gpt2" else AutoModel.from_config(tiny_config("gpt2")).eval()
    backbone = wrap_hf_model(model)
    alone = torch.randint(5, VOCAB, (1, 4))
    solo = backbone({"input_ids": alone, "attention_mask": torch.ones_like(alone)})["hidden"][0]
    for side in ("right", "left"):
        batch = _padded(side)
        row = 2  # 3 real tokens; replace them with `alone`'s first 3 and compare those positions
        real = batch["attention_mask"][row].bool()
        batch["input_ids"][row, real] = alone[0, :3]
        got = backbone(batch)["hidden"][row, real]
        torch.testing.assert_close(got, solo[:3], **TOL)
