"""Classification heads: pooling, optional MLP, dropout, a linear classifier."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ftengine.heads.pooling import POOLINGS

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def init_linear(layer: nn.Linear, std: float = 0.02) -> None:
    """Truncated normal weights (std 0.02, cut at 2 std) and zero bias, as BERT and ViT initialise new layers.

    Small weights keep the new head's first logits near zero, so its early gradients do not swamp the
    pretrained features when the backbone trains too.
    """
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ClassificationHead(nn.Module):
    """``state -> logits (B, num_classes)``: pool, then ``[dropout, linear, activation]`` per hidden layer,
    then dropout and the classifier.

    Parameter names (``head.`` is prepended by the model): ``hidden.<i>.linear.{weight,bias}``,
    ``classifier.{weight,bias}``.

    Args:
        in_features: size of the pooled feature vector (the backbone's ``feature_dim``).
        num_classes: number of classes.
        hidden: hidden layer sizes (empty: a linear head).
        dropout: dropout probability before every linear layer.
        activation: ``gelu``, ``relu`` or ``tanh`` after each hidden layer.
        pooling: ``cls``, ``mean``, ``last``, ``pooler``, ``avg`` or ``max`` (already resolved from ``auto``).
    """

    def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (), dropout: float = 0.1,
                 activation: str = "gelu", pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (poolings: {', '.join(POOLINGS)})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}' (activations: {', '.join(ACTIVATIONS)})")
        self.in_features, self.num_classes, self.pooling = int(in_features), int(num_classes), pooling
        self.hidden_sizes, self.dropout_p, self.activation = [int(h) for h in hidden], float(dropout), activation
        self._pool = POOLINGS[pooling]
        blocks, width = [], self.in_features
        for size in self.hidden_sizes:
            block = nn.Sequential(OrderedDict(dropout=nn.Dropout(dropout), linear=nn.Linear(width, size),
                                              act=ACTIVATIONS[activation]()))
            init_linear(block.linear)
            blocks.append(block)
            width = size
        self.hidden = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, self.num_classes)
        init_linear(self.classifier)

    def features(self, state: Mapping[str, Tensor]) -> Tensor:
        """The pooled feature vector (B, in_features)."""
        return self._pool(state)

    def forward(self, state: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from the backbone's final state."""
        x = self.features(state)
        for block in self.hidden:
            x = block(x)
        return self.classifier(self.dropout(x))

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this head (saved next to the weights): ``ClassificationHead(**config)``."""
        return {"in_features": self.in_features, "num_classes": self.num_classes, "hidden": list(self.hidden_sizes),
                "dropout": self.dropout_p, "activation": self.activation, "pooling": self.pooling}

    def extra_repr(self) -> str:
        return f"pooling={self.pooling}"
