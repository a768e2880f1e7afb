"""Apply one stage of the plan to the model: which parameters take gradients, which modules run in train mode.

Freezing never touches the optimizer's set of groups (see `param_groups`); here it only decides what
autograd tracks and how stochastic / statistics-keeping layers behave:

- trainable groups and the head run in train mode;
- frozen groups follow the stage's `frozen_batchnorm` (BatchNorm running statistics) and `frozen_dropout`
  (dropout, and containers whose `training` flag drives functional stochasticity such as drop-connect), which
  the planner copied from `freeze.frozen_batchnorm` / `freeze.frozen_dropout` when it decided cacheability;
- groups the head never reads (a BERT pooler under mean pooling) stay in eval mode and frozen.
"""

from __future__ import annotations

from torch import nn

from ftengine.planner.adapters import adapter_group, is_adapter_group
from ftengine.planner.graph import ExecutionGraph, StagePlan

_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


def apply_freeze(model: nn.Module, graph: ExecutionGraph, stage: StagePlan) -> None:
    """Set `requires_grad` of every parameter from the stage plan (head parameters: the `head` group)."""
    trainable = set(stage.trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(graph.group_of(name) in trainable)


def set_train_modes(model: nn.Module, graph: ExecutionGraph, stage: StagePlan) -> None:
    """Put the model in training mode for `stage`, with frozen layers following the stage's policy."""
    model.train()
    bn_train = stage.frozen_batchnorm == "train"
    dropout_train = stage.frozen_dropout == "train"
    trainable = set(stage.trainable)
    for info in graph.backbone_groups:
        # An adapter group runs inside its base group, which runs in train mode while the adapter trains.
        if info.name in trainable or adapter_group(info.name) in trainable or is_adapter_group(info.name):
            continue
        # The frozen prefix feeds the activation cache; a used frozen group above it follows the policy too.
        keep_dropout = dropout_train and info.used
        keep_bn = bn_train and info.used
        for root in model.backbone.group_modules(info.name):
            for module in root.modules():
                module.training = keep_bn if isinstance(module, _BATCHNORM) else keep_dropout


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) scalar parameter counts (after `apply_freeze`)."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
