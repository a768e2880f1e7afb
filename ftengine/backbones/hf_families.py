"""Layer groups and group runners for transformers model families.

Each runner reproduces the corresponding slice of the model's own ``forward`` (transformers 5):
the attention mask is built by the same ``transformers.masking_utils`` function the model calls,
from the same arguments, so running from any boundary gives the model's own ``last_hidden_state``.
The mask is built once per ``forward_from`` call (``ctx``) and reused by every layer.

Families are registered by ``config.model_type``; :func:`register_hf_family` adds more. This module
holds the BERT-style encoders and GPT-2; ``hf_encoders``, ``hf_decoders`` and ``hf_vision`` hold the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ftengine.backbones.backbone import GroupDef, State


@dataclass(frozen=True)
class HFFamily:
    """How to split one kind of transformers model.

    Attributes:
        family: ``encoder``/``decoder`` (text), ``vit``/``cnn`` (images); picks the head's default pooling.
        groups: ``model -> groups``; group 0 reads raw inputs (``input_ids``/``attention_mask`` or ``pixels``),
            every group returns the state entering the next one.
        modality: ``text`` (hidden states, tokenizer) or ``image`` (``features``, image preprocessing).
    """

    family: Literal["encoder", "decoder", "vit", "cnn"]
    groups: Callable[[nn.Module], list[GroupDef]]
    modality: Literal["text", "image"] = "text"


HF_FAMILIES: dict[str, HFFamily] = {}


def register_hf_family(model_types: tuple[str, ...], family: HFFamily) -> None:
    """Register a group layout for these ``config.model_type`` values (the ``hf`` kind then accepts them).

    Example, for a model whose forward is ``norm(blocks(embed(input_ids)))``::

        def my_groups(model):
            def embed(model, state, ctx):
                return {"hidden": model.embed(state["input_ids"]), "attention_mask": state["attention_mask"]}
            ...
            return [GroupDef("embeddings", ("embed",), embed), ...]

        register_hf_family(("my-model",), HFFamily("encoder", my_groups))

    The runners must reproduce the model's own forward from every group boundary; the test pattern in
    ``tests/backbones/test_backbone_hf_families.py`` checks exactly that on a tiny random config.
    """
    for model_type in model_types:
        HF_FAMILIES[model_type] = family


def unwrap(out: Tensor | tuple[Tensor, ...]) -> Tensor:
    """A layer's hidden states, whether it returns a tensor or a tuple."""
    # Layers return a tensor in transformers 5 and a tuple (hidden, ...) in older releases.
    return out[0] if isinstance(out, tuple) else out


def numbered_groups(prefix: str, count: int, runner: Callable[..., State]) -> list[GroupDef]:
    """Groups ``{prefix}0`` .. ``{prefix}{count-1}``, each the submodule of that name run by ``runner(i, ...)``.

    The layer stack of every family: ``numbered_groups("encoder.layer.", 6, _encoder_layer)``.
    """
    return [GroupDef(f"{prefix}{i}", (f"{prefix}{i}",), partial(runner, i)) for i in range(count)]


def _layer_kwargs(config: Any) -> dict[str, Any]:
    # The model's forward forwards `is_causal` from the config to every layer when the config sets it.
    is_causal = getattr(config, "is_causal", None)
    return {} if is_causal is None else {"is_causal": is_causal}


def mask_or_ones(state: State, ids: Tensor) -> Tensor:
    """The batch's attention mask (B, T), or all ones when the batch has none."""
    mask = state.get("attention_mask")
    return torch.ones_like(ids) if mask is None else mask


# --- BERT-family encoders: embeddings, encoder.layer.0..N-1, pooler -------------------------------

def _encoder_embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    hidden = model.embeddings(input_ids=ids, token_type_ids=state.get("token_type_ids"))
    if hasattr(model, "embeddings_project"):  # ELECTRA: embedding size != hidden size
        hidden = model.embeddings_project(hidden)
    return {"hidden": hidden, "attention_mask": mask_or_ones(state, ids)}


def bidirectional_mask(model: nn.Module, state: State, ctx: dict[str, Any]) -> Tensor | None:
    """The encoder attention mask the model's forward builds, made once per ``forward_from`` call."""
    if "mask" not in ctx:
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers < 4.56: the additive (B, 1, 1, T) mask BertModel built then
            hidden, mask = state["hidden"], state["attention_mask"]
            ctx["mask"] = model.get_extended_attention_mask(mask, mask.shape, dtype=hidden.dtype)
            return ctx["mask"]
        # Same call as BertModel._create_attention_masks: eager gets an additive float mask,
        # sdpa a boolean one (or None when nothing is padded).
        ctx["mask"] = create_bidirectional_mask(
            config=model.config, inputs_embeds=state["hidden"], attention_mask=state["attention_mask"])
    return ctx["mask"]


def _encoder_layer(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    mask = bidirectional_mask(model, state, ctx)
    hidden = unwrap(model.encoder.layer[index](state["hidden"], mask, **_layer_kwargs(model.config)))
    return {**state, "hidden": hidden}


def _encoder_pooler(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {**state, "pooled": model.pooler(state["hidden"])}


def encoder_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings``, ``encoder.layer.0`` .. ``encoder.layer.N-1``, ``pooler`` (when the model has one)."""
    embed_modules = ("embeddings", "embeddings_project") if hasattr(model, "embeddings_project") else ("embeddings",)
    groups = [GroupDef("embeddings", embed_modules, _encoder_embed)]
    groups += numbered_groups("encoder.layer.", len(model.encoder.layer), _encoder_layer)
    if getattr(model, "pooler", None) is not None:
        groups.append(GroupDef("pooler", ("pooler",), _encoder_pooler))
    return groups


# --- GPT-2-style decoders: embeddings (wte, wpe, drop), h.0..h.N-1, ln_f ----------------------------

def decoder_positions(mask: Tensor) -> Tensor:
    """Position ids (B, T) counted from each row's first real token: ``arange(T) - first``, clamped at 0.

    Without left padding this is the model's own default (0..T-1, padding or not). With left padding a
    sequence keeps the positions it has alone (as ``generate`` gives it), so the batch it shares and the
    padding it gets never change its hidden states.
    """
    first = mask.long().argmax(dim=1, keepdim=True)  # (B, 1): index of the first real token (0 if none)
    return (torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) - first).clamp(min=0)


_CAUSAL_BUILDERS = {"full_attention": "create_causal_mask", "sliding_attention": "create_sliding_window_causal_mask"}


def causal_masks(config: Any, hidden: Tensor, attention_mask: Tensor, types: Iterable[str] = ("full_attention",),
                 *, bidirectional: bool = False) -> tuple[dict[str, Any], Tensor]:
    """The decoder masks the model's forward builds, one per attention type, and the position ids they assume.

    Each comes from the ``transformers.masking_utils`` function the model calls for that type, with the same
    arguments; callers build them once per ``forward_from`` call (``ctx``). ``bidirectional`` (Gemma 3's
    ``use_bidirectional_attention``, EmbeddingGemma): every token sees every other one, within the window for
    sliding layers, as that model's forward overlays it.
    """
    from transformers import masking_utils

    mask2d = attention_mask.view(hidden.shape[0], -1)
    positions = decoder_positions(mask2d)
    extra: dict[str, dict[str, Any]] = {t: {} for t in types}
    if bidirectional:
        window = getattr(config, "sliding_window", None)
        extra["full_attention"] = {"or_mask_function": lambda *args: torch.tensor(True, dtype=torch.bool)}
        extra["sliding_attention"] = {"or_mask_function": _window_overlay(window)}
    # The 4th argument (no KV cache) is `past_key_values` before transformers 5.2x and `cache` after: positional.
    masks = {t: getattr(masking_utils, _CAUSAL_BUILDERS[t])(config, hidden, mask2d, None, position_ids=positions,
                                                           **extra.get(t, {}))
             for t in types}
    return masks, positions


def _window_overlay(window: int | None) -> Any:
    """A mask function letting a token see the others within ``window`` positions, both ways."""
    def inner(batch_idx: int, head_idx: int, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (q_idx - kv_idx).abs() < (window or 0)
    return inner


def _decoder_embed(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    ids = state["input_ids"]
    mask = mask_or_ones(state, ids)
    inputs_embeds = model.wte(ids)
    hidden = inputs_embeds + model.wpe(decoder_positions(mask))
    if state.get("token_type_ids") is not None:  # GPT-2 embeds token types with wte
        hidden = hidden + model.wte(state["token_type_ids"])
    return {"hidden": model.drop(hidden), "attention_mask": mask}


def _decoder_block(index: int, model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    hidden = state["hidden"]
    if "mask" not in ctx:
        masks, ctx["positions"] = causal_masks(model.config, hidden, state["attention_mask"])
        ctx["mask"] = masks["full_attention"]
    out = model.h[index](hidden, None, ctx["mask"], None, encoder_attention_mask=None, use_cache=False,
                         position_ids=ctx["positions"], **_layer_kwargs(model.config))
    return {**state, "hidden": unwrap(out)}


def _decoder_final_norm(model: nn.Module, state: State, ctx: dict[str, Any]) -> State:
    return {**state, "hidden": model.ln_f(state["hidden"])}


def decoder_groups(model: nn.Module) -> list[GroupDef]:
    """``embeddings`` (wte, wpe, drop), ``h.0`` .. ``h.N-1``, ``ln_f``."""
    groups = [GroupDef("embeddings", ("wte", "wpe", "drop"), _decoder_embed)]
    groups += numbered_groups("h.", len(model.h), _decoder_block)
    groups.append(GroupDef("ln_f", ("ln_f",), _decoder_final_norm))
    return groups


register_hf_family(("bert", "roberta", "xlm-roberta", "camembert", "electra"), HFFamily("encoder", encoder_groups))
register_hf_family(("gpt2",), HFFamily("decoder", decoder_groups))
