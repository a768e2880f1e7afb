"""`adapters`: low-rank adapters (LoRA, Hu et al. 2021) trained in place of the layers they wrap.

The adapter modules come from Hugging Face `peft` (its `LoraConfig`), so a run's adapter is saved in peft's
format and loads with `peft.PeftModel.from_pretrained` on the base model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ftengine.spec.base import MAX_WIDTH, StrictModel


class LoraSpec(StrictModel):
    """LoRA adapters on the linear layers of chosen layer groups.

    Each adapted layer computes `W x + (alpha / r) * B A x` with `A` (r x in) random and `B` (out x r) zero at the
    start, so training starts from the pretrained function. The base weights of an adapted group never train:
    a freeze selector that names an adapted group (or `all` / `backbone`) trains its adapter group
    `lora:<group>` instead, and an adapter group can also be named directly (`lora:encoder.layer.5`, `lora:*`).
    """

    kind: Literal["lora"] = "lora"
    """Adapter type (only `lora`)."""
    targets: list[str] = Field(default_factory=lambda: ["backbone"], min_length=1)
    """Layer groups whose linear layers get adapters, as freeze selectors (`encoder.layer.*`, `backbone`)."""
    modules: list[str] = Field(default_factory=list)
    """Only layers whose name (or dotted name suffix) is one of these, e.g. `[query, value]` for BERT,
    `[c_attn]` for GPT-2; empty: every linear layer of the target groups."""
    r: int = Field(default=8, ge=1, le=MAX_WIDTH)
    """Rank of the update `B A`."""
    alpha: float = Field(default=16.0, gt=0, le=1e6)
    """Scale numerator: the update is multiplied by `alpha / r`."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter's input (train mode only)."""


AdapterSpec = LoraSpec
"""Every adapter kind (a `kind`-discriminated union once there is more than one)."""
