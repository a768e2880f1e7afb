"""The classification head placed on top of the backbone."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ftengine.spec.base import MAX_WIDTH, StrictModel


class HeadSpec(StrictModel):
    """A new classifier head; it replaces the backbone's own classifier if it has one."""

    kind: Literal["linear", "mlp"] = "linear"
    """`linear` (one layer) or `mlp` (hidden layers given by `hidden`)."""
    pooling: Literal["auto", "cls", "mean", "last", "pooler", "avg", "max"] = "auto"
    """How token or spatial features become one vector: auto = mean for encoders, last token for decoders, avg for CNNs."""
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(default_factory=list)
    """Hidden layer sizes of an `mlp` head."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout before each linear layer of the head."""
    activation: Literal["gelu", "relu", "tanh"] = "gelu"
    """Activation between the hidden layers of an `mlp` head."""
    num_classes: int | None = Field(default=None, ge=2, le=MAX_WIDTH)
    """Number of classes; null takes it from the training labels."""

    @model_validator(mode="after")
    def _hidden_matches_kind(self) -> "HeadSpec":
        if self.kind == "mlp" and not self.hidden:
            raise ValueError("an mlp head needs hidden layer sizes, e.g. hidden: [256]")
        if self.kind == "linear" and self.hidden:
            raise ValueError("a linear head has no hidden layers; use kind: mlp or drop hidden")
        return self
