"""hf backbones: running from every group boundary reproduces transformers' own forward.

References are the models' own ``forward`` (``last_hidden_state``, ``pooler_output``) and their
``output_hidden_states`` for the activations at each boundary; batches contain padding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from backbone_specs import entering_states, tiny_config

from ftengine.backbones import build_backbone, wrap_hf_model
from ftengine.spec import HFBackboneSpec

TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_minilm_groups_and_names(minilm_backbone, minilm_model):
    backbone = minilm_backbone
    assert backbone.group_names == ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)] + ["pooler"]
    assert (backbone.modality, backbone.family, backbone.feature_dim) == ("text", "encoder", 384)
    # Parameter and state-dict names are the original model's, without a wrapper prefix.
    assert [n for n, _ in backbone.named_parameters()] == [n for n, _ in minilm_model.named_parameters()]
    assert backbone.state_dict().keys() == minilm_model.state_dict().keys()
    grouped = [n for g in backbone.groups for n in g.param_names]
    assert sorted(grouped) == sorted(n for n, _ in backbone.named_parameters())  # each exactly once
    assert sum(g.num_params for g in backbone.groups) == sum(p.numel() for p in minilm_model.parameters())
    assert backbone.groups[3].param_names[0] == "encoder.layer.2.attention.self.query.weight"
    assert backbone.group_modules("encoder.layer.2")[0] is backbone.model.encoder.layer[2]


def test_minilm_weights_are_pretrained(minilm_backbone, minilm_model):
    for (name, ours), (_, ref) in zip(minilm_backbone.named_parameters(), minilm_model.named_parameters()):
        assert torch.equal(ours, ref), name


@torch.no_grad()
def test_minilm_forward_from_every_boundary(minilm_backbone, minilm_model, padded_batch):
    assert (padded_batch["attention_mask"] == 0).any(), "the batch must contain padding"
    ref = minilm_model(**padded_batch, output_hidden_states=True)
    full = minilm_backbone(padded_batch)
    torch.testing.assert_close(full["hidden"], ref.last_hidden_state, **TOL)
    torch.testing.assert_close(full["pooled"], ref.pooler_output, **TOL)
    torch.testing.assert_close(minilm_backbone.embed(padded_batch)["hidden"], ref.hidden_states[0], **TOL)
    for k in range(1, len(minilm_backbone.groups)):
        # hidden_states[j] enters encoder layer j (group j + 1); the pooler gets the last one.
        state = {"hidden": ref.hidden_states[min(k - 1, 6)], "attention_mask": padded_batch["attention_mask"]}
        out = minilm_backbone.forward_from(k, state)
        torch.testing.assert_close(out["hidden"], ref.last_hidden_state, **TOL)
        torch.testing.assert_close(out["pooled"], ref.pooler_output, **TOL)


@torch.no_grad()
def test_forward_from_stop_gives_intermediate_states(minilm_backbone, minilm_model, padded_batch):
    ref = minilm_model(**padded_batch, output_hidden_states=True)
    state = minilm_backbone.forward_from(0, padded_batch, stop=3)
    torch.testing.assert_close(state["hidden"], ref.hidden_states[2], **TOL)
    assert minilm_backbone.forward_from(2, state, stop=2)["hidden"] is state["hidden"]
    with pytest.raises(IndexError, match="index <= stop"):
        minilm_backbone.forward_from(5, state, stop=2)


def test_minilm_tokenizer_and_shapes(minilm_backbone):
    assert minilm_backbone.tokenizer("hello world")["input_ids"][0] == minilm_backbone.tokenizer.cls_token_id
    assert minilm_backbone.boundary_shape(0, 12) == (12,)
    assert minilm_backbone.boundary_shape(4, 12) == (12, 384)
    assert minilm_backbone.preprocessing is None


def test_meta_build_is_structure_only(minilm_dir, minilm_backbone, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a structure-only build must not load weights")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_load)
    meta = build_backbone(HFBackboneSpec(source=str(minilm_dir)), pretrained=False, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert meta.groups == minilm_backbone.groups  # same names, parameter names and counts


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "gpt2"])
@torch.no_grad()
def test_tiny_models_every_boundary(model_type, attn):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(model_type, attn)).eval()
    assert model.config._attn_implementation == attn
    backbone = wrap_hf_model(model)
    ids = torch.randint(5, 97, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    ref, entering = entering_states(backbone, model, input_ids=ids, attention_mask=mask)
    assert sorted(entering) == list(range(1, len(backbone.groups)))
    for k in range(len(backbone.groups)):
        state = {"input_ids": ids, "attention_mask": mask} if k == 0 else \
            {"hidden": entering[k], "attention_mask": mask}
        out = backbone.forward_from(k, state)
        torch.testing.assert_close(out["hidden"], ref.last_hidden_state, **TOL)
        if getattr(model, "pooler", None) is not None:
            torch.testing.assert_close(out["pooled"], ref.pooler_output, **TOL)
    if model_type == "gpt2":
        expected = ["embeddings", "h.0", "h.1", "h.2", "ln_f"]
    else:
        expected = ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]
        expected += ["pooler"] if getattr(model, "pooler", None) is not None else []
    assert backbone.group_names == expected
    assert backbone.family == ("decoder" if model_type == "gpt2" else "encoder")


def test_deepcopy_is_independent(minilm_backbone, padded_batch):
    clone = copy.deepcopy(minilm_backbone)
    with torch.no_grad():
        clone.encoder.layer[5].output.dense.weight.zero_()
        before = minilm_backbone(padded_batch)["hidden"]
        after = clone(padded_batch)["hidden"]
    assert clone.model.encoder.layer[5] is clone.encoder.layer[5]
    assert not torch.allclose(before, after)  # the copy's runners act on the copy's modules
    assert minilm_backbone.encoder.layer[5].output.dense.weight.abs().sum() > 0


@pytest.mark.gpu
@torch.no_grad()
def test_minilm_on_cuda_bf16_matches_its_own_forward(minilm_dir, padded_batch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    backbone = build_backbone(HFBackboneSpec(source=str(minilm_dir)), device="cuda").eval()
    batch = {k: v.cuda() for k, v in padded_batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref = backbone.model(**batch, output_hidden_states=True)
        for k in range(1, 7):
            out = backbone.forward_from(k, {"hidden": ref.hidden_states[k - 1], "attention_mask": batch["attention_mask"]})
            # Same kernels on the same inputs; bf16's tolerance covers any non-deterministic reduction order.
            torch.testing.assert_close(out["hidden"], ref.last_hidden_state, rtol=1.6e-2, atol=1e-2)
