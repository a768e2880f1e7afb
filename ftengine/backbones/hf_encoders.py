"""More transformers encoders: DistilBERT, DeBERTa-v2/v3 and ModernBERT.

Each runner calls the model's own modules with the arguments its forward passes them (transformers 5):

- DistilBERT: ``embeddings`` -> ``transformer.layer.i(hidden, mask)``; the mask comes from
  ``create_bidirectional_mask`` as in ``DistilBertModel.forward``.
- DeBERTa-v2 (DeBERTa-v3 checkpoints use this model type): ``embeddings(ids, token_type_ids, mask)`` ->
  ``encoder.layer.i(hidden, mask4d, relative_pos=..., rel_embeddings=...)``. The relative position
  embeddings (``encoder.rel_embeddings`` and its LayerNorm) are read by every layer, so they belong to the
  ``embeddings`` group: freezing the embeddings freezes them, and a cache after the embeddings stays valid.
  The optional convolution (``encoder.conv``, DeBERTa-v2-xlarge) runs after layer 0 on the embeddings
  output, so it belongs to ``encoder.layer.0``.
- ModernBERT: ``embeddings`` -> ``layers.i(hidden, mask, position_embeddings)`` -> ``final_norm``; global and
  local (sliding-window) layers get their own masks and rotary embeddings, as ``ModernBertModel.forward``
  builds them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from ftengine.backbones.backbone import GroupDef, State
from ftengine.backbones.hf_families import (HFFamily, bidirectional_mask, mask_or_ones, numbered_groups,
                                            register_hf_family, unwrap)
from ftengine.errors import SpecError

# --- DistilBERT: embeddings, transformer.layer.0..N-1 ---------------------------------------------


def _distil_embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    return {"hidden": model.embeddings(ids), "attention_mask": mask_or_ones(state, ids)}


def _distil_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    mask = bidirectional_mask(model, state, ctx)
    return {**state, "hidden": unwrap(model.transformer.layer[index](state["hidden"], mask))}


def distilbert_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings``, ``transformer.layer.0`` .. ``transformer.layer.N-1``."""
    groups = [GroupDef("embeddings", ("embeddings",), _distil_embed)]
    return groups + numbered_groups("transformer.layer.", len(model.transformer.layer), _distil_layer)


# --- DeBERTa-v2/v3: embeddings (+ relative position embeddings), encoder.layer.0..N-1 -------------


def _deberta_embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    mask = mask_or_ones(state, ids)
    types = state.get("token_type_ids")
    types = torch.zeros_like(ids) if types is None else types
    hidden = model.embeddings(input_ids=ids, token_type_ids=types, mask=mask)
    return {"hidden": hidden, "attention_mask": mask}


def _deberta_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    encoder, hidden = model.encoder, state["hidden"]
    if "mask" not in ctx:  # DebertaV2Encoder.forward's preparation, once per call
        ctx["mask"] = encoder.get_attention_mask(state["attention_mask"])
        ctx["relative_pos"] = encoder.get_rel_pos(hidden)
        ctx["rel_embeddings"] = encoder.get_rel_embedding()
    out = unwrap(encoder.layer[index](hidden, ctx["mask"], query_states=None, relative_pos=ctx["relative_pos"],
                                      rel_embeddings=ctx["rel_embeddings"], output_attentions=False))
    if index == 0 and encoder.conv is not None:
        out = encoder.conv(hidden, out, state["attention_mask"])
    return {**state, "hidden": out}


def deberta_v2_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings`` (with ``encoder.rel_embeddings``/``encoder.LayerNorm``), ``encoder.layer.0`` .. ``N-1``."""
    if getattr(model, "z_steps", 0) > 1:
        raise SpecError(f"backbone.source: DeBERTa with z_steps={model.z_steps} is not supported (got a config "
                        "that reruns the last layer); use a checkpoint with z_steps <= 1")
    encoder = model.encoder
    shared = [f"encoder.{name}" for name in ("rel_embeddings", "LayerNorm") if hasattr(encoder, name)]
    groups = [GroupDef("embeddings", ("embeddings", *shared), _deberta_embed)]
    for i in range(len(encoder.layer)):
        modules = (f"encoder.layer.{i}",) + (("encoder.conv",) if i == 0 and encoder.conv is not None else ())
        groups.append(GroupDef(f"encoder.layer.{i}", modules, partial(_deberta_layer, i)))
    return groups


# --- ModernBERT: embeddings, layers.0..N-1, final_norm --------------------------------------------


def _modernbert_embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    return {"hidden": model.embeddings(input_ids=ids), "attention_mask": mask_or_ones(state, ids)}


def _modernbert_prepare(model: nn.Module, state: State, ctx: dict[str, Any]) -> None:
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    hidden, config = state["hidden"], model.config
    kwargs = {"config": config, "inputs_embeds": hidden, "attention_mask": state["attention_mask"]}
    ctx["masks"] = {"full_attention": create_bidirectional_mask(**kwargs),
                    "sliding_attention": create_bidirectional_sliding_window_mask(**kwargs)}
    positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)  # the forward's default
    ctx["rope"] = {t: model.rotary_emb(hidden, positions, t) for t in set(config.layer_types)}


def _modernbert_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    if "masks" not in ctx:
        _modernbert_prepare(model, state, ctx)
    layer = model.layers[index]
    out = layer(state["hidden"], attention_mask=ctx["masks"][layer.attention_type],
                position_embeddings=ctx["rope"][layer.attention_type])
    return {**state, "hidden": unwrap(out)}


def _modernbert_norm(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {**state, "hidden": model.final_norm(state["hidden"])}


def modernbert_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings`` (the parameter-free rotary module rides along), ``layers.i``, ``final_norm``."""
    groups = [GroupDef("embeddings", ("embeddings", "rotary_emb"), _modernbert_embed)]
    groups += numbered_groups("layers.", len(model.layers), _modernbert_layer)
    groups.append(GroupDef("final_norm", ("final_norm",), _modernbert_norm))
    return groups


register_hf_family(("distilbert",), HFFamily("encoder", distilbert_groups))
register_hf_family(("deberta-v2",), HFFamily("encoder", deberta_v2_groups))
register_hf_family(("modernbert",), HFFamily("encoder", modernbert_groups))
