"""Typed wrappers over the ``torch.ops.ftengine`` ops (schemas in ``_schemas``)."""

from __future__ import annotations

import torch

from ftengine.kernels import _native  # noqa: F401  (defines the schemas and loads the native kernels)


def gather_ragged(data: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor,
                  max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded batch ``(B, max_len, D)`` in ``dtype`` and its int64 mask ``(B, max_len)`` from ragged rows.

    Semantics: ``reference.gather_ragged``. Every tensor must be on ``data``'s device; ``data`` must be 2-D with
    unit-stride rows.
    """
    return torch.ops.ftengine.gather_ragged(data, offsets, lengths, index, max_len, dtype)


def flat_grad_sqnorm(grad: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Float32 scalar: sum of squares of ``grad`` over the trainable rows of ``segments`` (int64 [G, 3])."""
    return torch.ops.ftengine.flat_grad_sqnorm(grad, segments)


def adamw_step(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, master: torch.Tensor | None,
               grad: torch.Tensor, segments: torch.Tensor, hyper: torch.Tensor, steps: torch.Tensor,
               grad_sqnorm: torch.Tensor | None = None, max_grad_norm: float = 0.0,
               skip_nonfinite: bool = False, anchor: torch.Tensor | None = None) -> None:
    """One AdamW step over every trainable row of a flat buffer, in place (semantics: ``reference.adamw_step``).

    Args:
        param: flat parameters (fp32, bf16 or fp16).
        exp_avg: first moments (fp32 or bf16), same length.
        exp_avg_sq: second moments, same dtype as ``exp_avg``.
        master: fp32 master weights for 16-bit ``param`` (None for fp32).
        grad: flat gradients, ``param``'s dtype.
        segments: int64 [G, 3] (offset, length, trainable), one row per segment (FlatOptimizer: per parameter).
        hyper: float64 [G, 5] per row (lr, weight_decay, beta1, beta2, eps); [G, 6] with ``anchor``, the last
            column being the L2-SP strength alpha (0: the row ignores its anchor).
        steps: int64 [G] per-row step counts; incremented for trainable rows when the step is taken.
        grad_sqnorm: global squared grad norm (from ``flat_grad_sqnorm``), needed for clipping / skipping.
        max_grad_norm: clip the global norm to this (<= 0: no clipping).
        skip_nonfinite: skip the whole step (nothing written) when the norm is inf/nan.
        anchor: L2-SP starting weights (fp32 or bf16), same length; None: no L2-SP (hyper without the column).
    """
    torch.ops.ftengine.adamw_step(param, exp_avg, exp_avg_sq, master, grad, segments, hyper, steps, grad_sqnorm,
                                  max_grad_norm, skip_nonfinite, anchor)


def sgd_step(param: torch.Tensor, momentum_buffer: torch.Tensor | None, master: torch.Tensor | None,
             grad: torch.Tensor, segments: torch.Tensor, hyper: torch.Tensor, steps: torch.Tensor,
             grad_sqnorm: torch.Tensor | None = None, max_grad_norm: float = 0.0,
             skip_nonfinite: bool = False, anchor: torch.Tensor | None = None) -> None:
    """One SGD (momentum / Nesterov) step over every trainable row, in place (semantics: ``reference.sgd_step``).

    ``hyper`` is float64 [G, 4] (lr, weight_decay, momentum, nesterov), [G, 5] with ``anchor`` (+ l2sp); without
    ``momentum_buffer`` it is plain SGD. Other arguments as in :func:`adamw_step`.
    """
    torch.ops.ftengine.sgd_step(param, momentum_buffer, master, grad, segments, hyper, steps, grad_sqnorm,
                                max_grad_norm, skip_nonfinite, anchor)
