"""WiSE-FT (Wortsman et al. 2022): weight-space ensembles of the pretrained and the fine-tuned backbone.

For each coefficient `a` of `output.wise_ft` the backbone's weights become `(1 - a) * pretrained + a * fine-tuned`
and the model is evaluated on the validation split; the best coefficient (by the early-stopping metric) stays
as the final model. The head keeps its fine-tuned weights at every `a`: it has no pretrained value (it is new),
and mixing it with its random initialisation would only scale its logits.

Only weights that can train differ from the pretrained ones, so only those are kept (`snapshot`, taken before
training or a resume loads anything) and mixed; a frozen weight is identical in both. LoRA adapters: the
pretrained update is zero (`lora_B` starts at zero), so mixing scales `lora_B` by `a` and keeps `lora_A`, which
scales the adapter's update `B A` by exactly `a`; mixing `A` too would scale it by `a**2` plus cross terms.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ftengine.planner.graph import BACKBONE_PREFIX, ExecutionGraph


def snapshot(model: nn.Module, graph: ExecutionGraph) -> dict[str, Tensor]:
    """CPU copies of the backbone weights that train in some stage (the pretrained side of the mix)."""
    trains = {g.name for stage in graph.stages for g in stage.groups if g.trainable}
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
            if name.startswith(BACKBONE_PREFIX) and graph.group_of(name) in trains}


@dataclass
class Sweep:
    """What the sweep found.

    Attributes:
        rows: one dict per coefficient: `alpha` and the validation metrics.
        best: the chosen coefficient.
        seconds: wall time of the whole sweep (mixing and evaluation).
    """

    rows: list[dict[str, Any]]
    best: float
    seconds: float


@torch.no_grad()
def mix(model: nn.Module, pretrained: dict[str, Tensor], finetuned: dict[str, Tensor], alpha: float) -> None:
    """Set each snapshot weight to `(1 - alpha) * pretrained + alpha * finetuned` in place (see module docs)."""
    params = dict(model.named_parameters())
    for name, start in pretrained.items():
        if ".lora_A." in name:
            continue  # the adapter's update is scaled through lora_B alone
        end = finetuned[name]
        params[name].copy_(torch.lerp(start.to(end.device, end.dtype), end, alpha))


def sweep(trainer: Any, pretrained: dict[str, Tensor], coefficients: Sequence[float], stage: Any) -> Sweep | None:
    """Evaluate every coefficient on validation, leave the model at the best one (None: no validation split).

    Args:
        trainer: the finished `Trainer` (its model holds the fine-tuned weights on entry).
        pretrained: `snapshot` of the same model before training.
        coefficients: the `a` values, in the order they are tried (ties keep the largest).
        stage: the stage plan evaluation runs under (its frozen prefix may be read from the activation cache,
            which the mix never touches: frozen weights are not in the snapshot).
    """
    if getattr(trainer.data, "validation", None) is None or len(trainer.data.validation) == 0:
        return None
    started = time.perf_counter()
    params = dict(trainer.model.named_parameters())
    finetuned = {n: params[n].detach().clone() for n in pretrained}  # on the device: one copy of what trained
    metric = trainer.settings.early_stopping_metric
    better = min if trainer.tracker.mode == "min" else max  # the direction early stopping watches it in
    rows = []
    for alpha in coefficients:
        mix(trainer.model, pretrained, finetuned, float(alpha))
        result = trainer.evaluate_split("validation", stage)
        rows.append({"alpha": float(alpha), **result.metrics("val_")})
    # Ties go to the larger coefficient (closest to the fine-tuned model, what the run would have kept without
    # the sweep): min/max return the first of equal values.
    best = better(sorted(rows, key=lambda r: -r["alpha"]), key=lambda r: r[metric])["alpha"]
    mix(trainer.model, pretrained, finetuned, best)
    return Sweep(rows, best, time.perf_counter() - started)


def format_sweep(result: Sweep, metric: str) -> str:
    """The sweep as a small table, the chosen row marked."""
    keys = [k for k in result.rows[0] if k != "alpha"]
    lines = ["WiSE-FT (backbone = (1-a)*pretrained + a*fine-tuned; head fine-tuned), validation:",
             "  a      " + "  ".join(f"{k:>14}" for k in keys)]
    for row in result.rows:
        mark = f"  <- best {metric}" if row["alpha"] == result.best else ""
        lines.append(f"  {row['alpha']:<5.3g}  " + "  ".join(f"{row[k]:>14.4f}" for k in keys) + mark)
    lines.append(f"  sweep time {result.seconds:.2f}s")
    return "\n".join(lines)
