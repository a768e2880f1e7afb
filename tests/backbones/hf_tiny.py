"""Tiny random configs of the hf families beyond BERT/GPT-2 (built offline, seconds to run)."""

from __future__ import annotations

from typing import Any

VOCAB = 97
_DECODER = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "image_size": 32, "patch_size": 8}

# Sliding windows of 4 tokens are shorter than the 9-token test batches, so they change the result.
TEXT: dict[str, tuple[str, dict[str, Any]]] = {
    "distilbert": ("distilbert", {"vocab_size": VOCAB, "dim": 32, "n_layers": 3, "n_heads": 2, "hidden_dim": 64,
                                  "max_position_embeddings": 64}),
    # DeBERTa-v3 layout: relative attention with log buckets, no absolute positions, shared keys.
    "deberta-v3": ("deberta-v2", {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 3,
                                  "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
                                  "relative_attention": True, "position_buckets": 8, "norm_rel_ebd": "layer_norm",
                                  "share_att_key": True, "pos_att_type": ["p2c", "c2p"],
                                  "position_biased_input": False, "type_vocab_size": 0}),
    # DeBERTa-v2-xlarge layout: the convolution after layer 0.
    "deberta-v2-conv": ("deberta-v2", {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "intermediate_size": 64,
                                       "max_position_embeddings": 64, "relative_attention": True,
                                       "position_buckets": 8, "conv_kernel_size": 3, "conv_act": "gelu",
                                       "pos_att_type": ["p2c", "c2p"]}),
    "modernbert": ("modernbert", {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 3, "num_attention_heads": 2, "max_position_embeddings": 64,
                                  "global_attn_every_n_layers": 2, "local_attention": 4, "pad_token_id": 0,
                                  "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2}),
    "llama": ("llama", _DECODER),
    "mistral": ("mistral", {**_DECODER, "sliding_window": 4}),
    "qwen2": ("qwen2", {**_DECODER, "use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "qwen3": ("qwen3", {**_DECODER, "head_dim": 8, "use_sliding_window": True, "sliding_window": 4,
                        "max_window_layers": 1}),
    "gemma": ("gemma", {**_DECODER, "head_dim": 8}),
    "gemma2": ("gemma2", {**_DECODER, "head_dim": 8, "sliding_window": 4}),
    "gemma3": ("gemma3_text", {**_DECODER, "head_dim": 8, "sliding_window": 4, "rope_local_base_freq": 100.0,
                               "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}),
    # EmbeddingGemma's layout: the same layers, attention both ways (within the window on sliding layers).
    "gemma3-bidirectional": ("gemma3_text", {**_DECODER, "head_dim": 8, "sliding_window": 4,
                                             "use_bidirectional_attention": True,
                                             "layer_types": ["sliding_attention", "full_attention",
                                                             "sliding_attention"]}),
    "phi3": ("phi3", {**_DECODER, "sliding_window": 4}),
}
IMAGE: dict[str, tuple[str, dict[str, Any]]] = {
    "vit": ("vit", _VIT),
    "dinov2": ("dinov2", _VIT),
    "convnext": ("convnext", {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 2, 1, 1], "image_size": 64}),
}
DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3-bidirectional", "phi3")


def tiny_model(name: str, attn: str | None = None, seed: int = 0):
    """A random-init base model (``AutoModel``) of a :data:`TEXT` or :data:`IMAGE` entry, eval mode.

    ``attn``: force ``eager`` or ``sdpa``; None keeps the model's default (sdpa where it has one).
    """
    import torch
    from transformers import AutoConfig, AutoModel

    model_type, fields = {**TEXT, **IMAGE}[name]
    config = AutoConfig.for_model(model_type, **fields)
    if attn is not None:
        config._attn_implementation = attn
    torch.manual_seed(seed)
    return AutoModel.from_config(config).eval()
