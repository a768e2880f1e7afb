"""Llama-style decoders: ``embed_tokens``, ``layers.0..N-1``, ``norm``, rotary position embeddings.

Covers every transformers model whose base forward is ``norm(layers(embed_tokens(ids)))`` with the rotary
embeddings computed once by ``model.rotary_emb`` and passed to each decoder layer: Llama (and SmolLM),
Mistral, Qwen2, Qwen3, Gemma (its embedding module applies the sqrt(hidden) scale), Gemma 2, Gemma 3 (text:
one rotary table per attention type, local and global, and optionally bidirectional attention, as in
EmbeddingGemma) and Phi-3.

Each layer gets the mask its attention type needs, built by the same ``transformers.masking_utils``
function the model calls: ``config.layer_types[i]`` where the config lists them (Qwen2/3, Gemma 2),
otherwise sliding-window for every layer when ``config.sliding_window`` is set (Mistral, Phi-3) and full
causal attention when not. Position ids come from the attention mask (:func:`decoder_positions`), so
left and right padding give a sequence the same hidden states.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ftengine.backbones.backbone import GroupDef, State
from ftengine.backbones.hf_families import (HFFamily, causal_masks, mask_or_ones, numbered_groups, register_hf_family,
                                            unwrap)

LLAMA_STYLE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")
PER_TYPE_ROPE = ("gemma3_text",)
"""Families whose ``rotary_emb(x, positions, layer_type)`` gives each attention type its own table."""


def layer_type(config: Any, index: int) -> str:
    """``full_attention`` or ``sliding_attention`` for decoder layer ``index`` (as the model's forward picks)."""
    types = getattr(config, "layer_types", None)
    if types:
        return types[index]
    return "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"


def _embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    return {"hidden": model.embed_tokens(ids), "attention_mask": mask_or_ones(state, ids)}


def _prepare(model: nn.Module, state: State, ctx: dict[str, Any]) -> None:
    """Masks per attention type, position ids and rotary (cos, sin): once per ``forward_from`` call."""
    hidden = state["hidden"]
    config = model.config
    types = {layer_type(config, i) for i in range(len(model.layers))}
    ctx["masks"], positions = causal_masks(config, hidden, state["attention_mask"], types,
                                           bidirectional=bool(getattr(config, "use_bidirectional_attention", False)))
    ctx["positions"] = positions
    if config.model_type in PER_TYPE_ROPE:
        ctx["rope"] = {t: model.rotary_emb(hidden, positions, t) for t in types}
    else:  # one ((B, T, head_dim) cos, sin) for every layer
        ctx["rope"] = dict.fromkeys(types, model.rotary_emb(hidden, position_ids=positions))


def _layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    if "masks" not in ctx:
        _prepare(model, state, ctx)
    kind = layer_type(model.config, index)
    out = model.layers[index](state["hidden"], attention_mask=ctx["masks"][kind], position_embeddings=ctx["rope"][kind],
                              position_ids=ctx["positions"])
    return {**state, "hidden": unwrap(out)}


def _norm(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {**state, "hidden": model.norm(state["hidden"])}


def llama_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings`` (embed_tokens; the parameter-free rotary module rides along), ``layers.i``, ``norm``."""
    groups = [GroupDef("embeddings", ("embed_tokens", "rotary_emb"), _embed)]
    groups += numbered_groups("layers.", len(model.layers), _layer)
    groups.append(GroupDef("norm", ("norm",), _norm))
    return groups


register_hf_family(LLAMA_STYLE, HFFamily("decoder", llama_groups))
