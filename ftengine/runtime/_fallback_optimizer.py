"""A pure-PyTorch optimizer with the `FlatOptimizer` interface, used when `ftengine.runtime.optimizer` is absent.

Same contract as the fused one: every parameter is registered from step 0, `group["trainable"]` masks whole
groups, `step()` clips the global gradient norm over trainable groups, skips a step with non-finite gradients
and returns `dict(grad_norm, skipped)`. Adam's bias correction counts the steps each group actually trained
(a group unfrozen at step 500 starts at step 1), which is what the fused kernels do as well.

Math: torch.optim.AdamW (decoupled decay) and torch.optim.SGD (momentum, Nesterov, coupled decay).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class FlatOptimizer(torch.optim.Optimizer):
    """Masked per-group AdamW/SGD (reference implementation; no flat storage)."""

    def __init__(self, param_groups: Iterable[dict[str, Any]], *, kind: str = "adamw",
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, momentum: float = 0.9,
                 nesterov: bool = False, max_grad_norm: float | None = None, skip_nonfinite: bool = True,
                 state_dtype: str = "fp32", backend: str = "auto") -> None:
        if kind not in ("adamw", "sgd"):
            raise ValueError(f"FlatOptimizer: kind must be adamw or sgd (got {kind!r})")
        defaults = dict(lr=1e-3, weight_decay=0.0, trainable=True, name="", betas=tuple(betas), eps=eps,
                        momentum=momentum, nesterov=nesterov)
        super().__init__(list(param_groups), defaults)
        self.kind, self.max_grad_norm, self.skip_nonfinite = kind, max_grad_norm, skip_nonfinite
        self.state_dtype = torch.bfloat16 if state_dtype == "bf16" else torch.float32
        for group in self.param_groups:
            group.setdefault("steps", 0)

    def set_trainable(self, name: str, trainable: bool) -> None:
        """Switch the group called `name` on or off."""
        for group in self.param_groups:
            if group["name"] == name:
                group["trainable"] = bool(trainable)
                return
        raise KeyError(f"no optimizer group named '{name}'")

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the gradients (kept allocated, like the flat optimizer's gradient buffer)."""
        super().zero_grad(set_to_none=set_to_none)

    def _trainable_grads(self) -> list[torch.Tensor]:
        return [p.grad for g in self.param_groups if g["trainable"] for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def step(self, closure: Any = None) -> dict[str, Any]:  # type: ignore[override]
        """One update of every trainable group; returns `dict(grad_norm, skipped)`."""
        grads = self._trainable_grads()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        grad_norm = float(norm)
        if self.skip_nonfinite and not math.isfinite(grad_norm):
            return dict(grad_norm=grad_norm, skipped=True)
        scale = 1.0
        if self.max_grad_norm is not None and self.max_grad_norm > 0:
            scale = min(1.0, self.max_grad_norm / (grad_norm + 1e-6))  # torch.nn.utils.clip_grad_norm_'s rule
        for group in self.param_groups:
            if not group["trainable"]:
                continue
            group["steps"] += 1
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float() * scale
                if self.kind == "adamw":
                    self._adamw(p, grad, group)
                else:
                    self._sgd(p, grad, group)
        return dict(grad_norm=grad_norm, skipped=False)

    def _adamw(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, dtype=self.state_dtype)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=self.state_dtype)
        (b1, b2), lr, t = group["betas"], group["lr"], group["steps"]
        exp_avg = state["exp_avg"].float().lerp_(grad, 1 - b1)
        exp_avg_sq = state["exp_avg_sq"].float().mul_(b2).addcmul_(grad, grad, value=1 - b2)
        state["exp_avg"].copy_(exp_avg)
        state["exp_avg_sq"].copy_(exp_avg_sq)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - b2 ** t)).add_(group["eps"])
        update = p.float().mul_(1 - lr * group["weight_decay"]).addcdiv_(exp_avg, denom, value=-lr / (1 - b1 ** t))
        p.copy_(update)

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        if group["weight_decay"]:
            grad = grad.add(p.float(), alpha=group["weight_decay"])
        if group["momentum"]:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone().to(self.state_dtype)
            else:
                state["momentum_buffer"].copy_(state["momentum_buffer"].float().mul_(group["momentum"]).add_(grad))
            buf = state["momentum_buffer"].float()
            grad = grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
        p.add_(grad.to(p.dtype), alpha=-group["lr"])
