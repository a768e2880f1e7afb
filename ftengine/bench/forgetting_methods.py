"""The six fine-tuning methods `ftengine bench forgetting` compares, each a variant of one MiniLM spec.

The base is the e2e bench's full fine-tuning recipe (`e2e_recipes.Recipe.spec`: same data section, head, AdamW,
per-stage linear schedule, batch 32, max_length 64) with a held-out test part added to the split. Each method
changes only the sections it is about:

| method | what changes |
|---|---|
| full_ft | nothing: every group and the head train for `epochs` (encoder LR 5e-5, head 1e-3) |
| lp_ft | `freeze.preset: head_then_full` (LP-FT): the head alone for 3 epochs on cached features, then everything |
| l2sp | `optimizer.l2sp.strength` (default 300): decay toward the pretrained weights instead of toward zero |
| wise_ft | `output.wise_ft: [0, 0.25, 0.5, 0.75, 1]`: the best mix on validation is the final model |
| lora | peft LoRA (r 8, alpha 16, dropout 0.05) on query/value of all 6 layers, LR 1e-3, no activation cache |
| lora_cached | the same on layers 2-5 only (`specs/text_lora.yaml`): embeddings and layers 0-1 come from the cache |

Torch-free (the CLI's option parser imports METHODS).
"""

from __future__ import annotations

import copy
from typing import Any

from ftengine.bench.e2e_recipes import MODEL, Recipe, Stage

METHODS = ("full_ft", "lp_ft", "l2sp", "wise_ft", "lora", "lora_cached")
"""In the order the suite runs them (and the table and chart show them)."""

NAMES = {"full_ft": "full fine-tuning", "lp_ft": "LP-FT (head, then all)", "l2sp": "L2-SP", "wise_ft": "WiSE-FT",
         "lora": "LoRA (layers 0-5)", "lora_cached": "LoRA (layers 2-5, cached prefix)"}

WISE_FT = [0.0, 0.25, 0.5, 0.75, 1.0]
LORA = {"kind": "lora", "modules": ["query", "value"], "r": 8, "alpha": 16, "dropout": 0.05}
LP_HEAD_EPOCHS = 3


def base_spec(*, seed: int, epochs: int, train: int, validation: int, test: int, threads: int, out_dir: str,
              source: str = MODEL, max_length: int = 64) -> dict[str, Any]:
    """Full fine-tuning of ``source`` on a seeded tweet subset split train / validation / test.

    The data split's seed stays 0 whatever ``seed`` is: every seed trains and evaluates on the same examples, and
    only the head's initialisation, dropout and batch order change.
    """
    recipe = Recipe("forgetting", (Stage(("head", "all"), epochs),), lr=5e-5, head_lr=1e-3, seed=seed,
                    max_length=max_length)
    spec = recipe.spec(train=train, validation=validation, threads=threads, out_dir=out_dir, source=source)
    total = train + validation + test
    spec["data"]["limit"] = total
    spec["data"]["split"] = {"validation": validation / total, "test": test / total, "seed": 0}
    spec["training"]["early_stopping"] = {"metric": "val_accuracy"}  # restores the best epoch; no early stop
    spec["output"]["plots"] = False
    return spec


def method_spec(method: str, base: dict[str, Any], *, l2sp_strength: float = 300.0,
                layers: int = 6) -> dict[str, Any]:
    """``base`` changed as ``method`` says (see the module's table); the run is named after the method.

    ``layers``: the backbone's encoder layers (6 for MiniLM-L6; LoRA's targets end at the top one).
    """
    if method not in METHODS:
        raise ValueError(f"bench forgetting: unknown method {method!r}; choose from {', '.join(METHODS)}")
    spec = copy.deepcopy(base)
    epochs = spec["freeze"]["stages"][0]["epochs"]
    spec["output"]["name"] = method
    spec["description"] = f"forgetting bench: {NAMES[method]}"
    if method == "lp_ft":
        spec["freeze"] = {"preset": "head_then_full", "head_epochs": LP_HEAD_EPOCHS, "stage_epochs": epochs}
    elif method == "l2sp":
        spec["optimizer"]["l2sp"] = {"strength": l2sp_strength}
    elif method == "wise_ft":
        spec["output"]["wise_ft"] = list(WISE_FT)
    elif method in ("lora", "lora_cached"):
        low = 0 if method == "lora" else 2
        spec["adapters"] = LORA | {"targets": [f"encoder.layer.{low}-{layers - 1}"]}
        spec["optimizer"] |= {"lr": 1e-3, "head_lr": 1e-3}  # adapters start at zero: a larger LR, as text_lora.yaml
        spec["cache"]["enabled"] = "off" if method == "lora" else "on"
    return spec
