"""LoRA adapters through Hugging Face `peft`: put them into a backbone, save them in peft's format, merge them.

`attach_adapters` injects peft's LoRA layers into the backbone's underlying model *in place*
(`peft.inject_adapter_in_model`), so the Backbone's registered modules are the wrapped ones: a wrapped linear
layer's weight is now `<layer>.base_layer.weight` and its adapter `<layer>.lora_A.default.weight` /
`<layer>.lora_B.default.weight`. The planner puts the `lora_` parameters of group `G` into their own layer
group `lora:G` (see `planner.adapters`), so they sit in the flat optimizer as their own groups.

A run's `model/adapter/` holds `adapter_model.safetensors` + `adapter_config.json` exactly as
`PeftModel.save_pretrained` writes them, so `PeftModel.from_pretrained(AutoModel.from_pretrained(base), folder)`
rebuilds the fine-tuned backbone (the head is ftengine's and lives in `model/model.safetensors`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftengine.errors import SpecError
from ftengine.planner.adapters import ADAPTER_MARK, adapted_groups
from ftengine.runtime.checkpoint import model_state
from ftengine.spec.adapters import AdapterSpec

ADAPTER_NAME = "default"
ADAPTER_DIR, MERGED_DIR = "adapter", "merged"
PEFT_PREFIX = "base_model.model."
"""Key prefix `PeftModel.save_pretrained` gives adapter weights (the PeftModel wraps a LoraModel wraps the model)."""


def _is_linear(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2's c_attn, c_proj, c_fc) is a linear layer with its weight stored transposed.
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def target_modules(backbone: Any, spec: AdapterSpec) -> list[str]:
    """Dotted names (in the backbone's underlying model) of the linear layers that get adapters.

    Raises:
        SpecError: a target selector names no group, or the module filter matches no linear layer.
    """
    groups = adapted_groups(spec, [g.name for g in backbone.groups])
    found: list[str] = []
    for group in groups:
        for root in backbone.groups[backbone.group_index(group)].module_names:
            if root in backbone.model._parameters:
                continue  # a bare parameter (ViT cls_token): nothing to adapt
            module = backbone.model.get_submodule(root)
            for name, sub in module.named_modules():
                full = f"{root}.{name}" if name else root
                if _is_linear(sub) and (not spec.modules or any(full == m or full.endswith("." + m)
                                                               for m in spec.modules)):
                    found.append(full)
    if not found:
        wanted = f"named {', '.join(spec.modules)} " if spec.modules else ""
        raise SpecError(f"adapters.modules: no linear layer {wanted}in the target groups ({', '.join(groups)}); "
                        "name layers the groups hold (e.g. query, value for BERT; c_attn for GPT-2) or leave "
                        "modules empty for every linear layer")
    return found


def lora_config(backbone: Any, spec: AdapterSpec) -> Any:
    """The `peft.LoraConfig` of `spec` on this backbone (target layers as exact dotted names)."""
    from peft import LoraConfig

    targets = target_modules(backbone, spec)
    conv1d = any(type(backbone.model.get_submodule(t)).__name__ == "Conv1D" for t in targets)
    source = backbone.info.get("location") or backbone.info.get("source")
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                      fan_in_fan_out=conv1d, bias="none", base_model_name_or_path=source)


def attach_adapters(backbone: Any, spec: AdapterSpec | None) -> Any:
    """Inject `spec`'s LoRA layers into `backbone` in place and re-describe its groups; returns the LoraConfig
    (None without adapters). Adapter weights start as peft initialises them (A random from the global RNG, B zero).
    """
    if spec is None:
        return None
    from peft import inject_adapter_in_model

    config = lora_config(backbone, spec)
    inject_adapter_in_model(config, backbone.model, adapter_name=ADAPTER_NAME)
    # peft replaced submodules of the model; re-register the top-level children and re-list each group's
    # parameters (the wrapped weights are now `...base_layer.weight`, plus the `lora_` ones).
    for top in list(backbone._modules):
        backbone._modules[top] = backbone.model.get_submodule(top)
    backbone.groups = backbone._describe_groups()
    backbone.info["adapters"] = {"kind": spec.kind, "r": spec.r, "alpha": spec.alpha, "layers": len(config.target_modules)}
    backbone.__dict__["lora_config"] = config
    return config


def is_adapter_param(name: str) -> bool:
    """Whether a parameter name is a LoRA adapter weight."""
    return ADAPTER_MARK in name


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The transformers model's state without adapters, under its original names (`...query.weight`): what
    `save_pretrained` of the un-adapted base model holds. Each tensor is a CPU storage of exactly its own bytes
    (``model_state``), not a clone: clones held a second copy of every weight while the model was written (87 MB for
    MiniLM, the peak of a cached run's memory)."""
    return {k.replace(".base_layer.", "."): v for k, v in model_state(model).items() if ADAPTER_MARK not in k}


def save_adapter(folder: Path, backbone: Any) -> Path:
    """Write `adapter_model.safetensors` + `adapter_config.json` as `PeftModel.save_pretrained` would."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(backbone.model, adapter_name=ADAPTER_NAME)
    save_file({PEFT_PREFIX + k: v.detach().cpu().clone().contiguous() for k, v in state.items()},
              str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = backbone.lora_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"])
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    return folder


def save_merged(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """`save_pretrained` of the base model with the adapter merged into its weights (`merge_and_unload`)."""
    from peft import PeftModel
    from transformers import AutoModel

    base = AutoModel.from_pretrained(str(base_dir), dtype=torch.float32)
    with warnings.catch_warnings():
        # peft asks transformers' deprecated `is_gradient_checkpointing`: a library-to-library notice, not the user's
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    return out_dir
