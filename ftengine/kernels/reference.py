"""Pure-PyTorch reference kernels: the executable specification of every ``ftengine`` op.

Each function here is registered as the op's default kernel (``CompositeExplicitAutograd``), so it runs on any
device when no native kernel is registered, and the native kernels are tested against it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


# --- activation cache (ftengine/runtime/cache): ragged gather ----------------------------------------------------

def gather_ragged(data: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor,
                  max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble a right-padded batch from ragged rows (spec of ``ftengine::gather_ragged``).

    Example ``i`` owns rows ``offsets[i] : offsets[i] + lengths[i]`` of ``data`` (its real tokens only).

    Args:
        data: (R, D) rows of every example, back to back.
        offsets: (N,) int64 first row of each example.
        lengths: (N,) int64 real tokens of each example.
        index: (B,) int64 example ids of the batch.
        max_len: T, the padded length; longer examples are cut to T.
        dtype: element type of the output (the compute dtype).

    Returns:
        out (B, T, D) in ``dtype``: ``out[b, t] = data[offsets[index[b]] + t]`` for ``t < min(lengths[index[b]], T)``,
        zeros elsewhere; mask (B, T) int64, 1 at real tokens.
    """
    positions = torch.arange(max_len, device=data.device)
    starts = offsets.index_select(0, index)
    lens = lengths.index_select(0, index).clamp(max=max_len)
    mask = positions.unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
    rows = (starts.unsqueeze(1) + positions.unsqueeze(0))[mask]  # real tokens' source rows, row-major
    out = data.new_zeros((index.shape[0], max_len, data.shape[1]), dtype=dtype)
    out[mask] = data.index_select(0, rows).to(dtype)
    return out, mask.to(torch.int64)


# ---- flat per-group optimizer ----------------------------------------------------------------------------------
# A flat buffer holds the parameters of one (device, dtype) group by group. `segments` is an int64 [G, 3] table
# (offset, length, trainable) of G rows, `hyper` a float64 [G, K] table of per-row hyper-parameters, `steps` the
# int64 [G] per-row step counts. Only trainable rows are read or written; a step that is taken increments the step
# count of every trainable row. FlatOptimizer gives each parameter its own row, trainable when its group trains
# and its .grad is not None, so a row's count is torch.optim's per-parameter state["step"] (a group unfrozen later
# starts its bias correction at t = 1; a parameter without a grad this step is not touched). Math in fp32; 16-bit
# params are updated through fp32 `master` weights and re-rounded; bf16 moments are read to fp32 and rounded back to
# nearest-even after the update.
#
# L2-SP (Li et al. 2018, "Explicit inductive bias for transfer learning"): with the optional flat `anchor` operand
# (the starting weights, fp32 or bf16, read to fp32), `hyper` gains one last column `l2sp` (alpha), and a row with
# alpha != 0 is also pulled toward its anchor:
#   AdamW (decoupled, like its weight decay):  w = w * (1 - lr * wd) - lr * alpha * (w - anchor) + adam update
#   SGD (coupled, through momentum, like its weight decay):  d = s * g + wd * w + alpha * (w - anchor)
# (w - anchor) is taken from the weights before this step's decay. Both decays apply when both are set; the runtime
# gives anchored groups wd = 0 (Li et al.: alpha toward the start for pretrained weights, plain decay for new ones).
# A row with alpha == 0 never reads its anchor slice (it may be uninitialised) and is updated exactly as without
# an anchor.


def flat_grad_sqnorm(grad: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Sum of squares (float32 scalar) of ``grad`` over the trainable segments."""
    total = torch.zeros((), dtype=torch.float64, device=grad.device)
    for offset, length, trainable in segments.tolist():
        if trainable and length:
            total += grad[offset:offset + length].double().square().sum()
    return total.float()


def _check_flat(op: str, param: torch.Tensor, grad: torch.Tensor, master: torch.Tensor | None,
                states: dict[str, torch.Tensor | None], anchor: torch.Tensor | None = None,
                hyper: torch.Tensor | None = None, columns: int = 0) -> None:
    """The native kernels' argument checks, with the same messages (RuntimeError, as TORCH_CHECK raises)."""
    if anchor is not None:
        if anchor.dtype not in (torch.float32, torch.bfloat16):
            raise RuntimeError(f"{op}: anchor must be float32 or bfloat16 (got {_c10_name(anchor.dtype)})")
        states = {**states, "anchor": anchor}
    if hyper is not None and hyper.dim() == 2 and hyper.shape[1] != columns + (anchor is not None):
        raise RuntimeError(f"{op}: hyper must have {columns + (anchor is not None)} columns "
                           f"({'with' if anchor is not None else 'without'} an anchor: the l2sp column comes with "
                           f"it) (got {hyper.shape[1]})")
    if grad.dtype != param.dtype:
        raise RuntimeError(f"{op}: grad dtype {_c10_name(grad.dtype)} differs from param dtype {_c10_name(param.dtype)}")
    if (param.dtype != torch.float32) != (master is not None):
        raise RuntimeError(f"{op}: " + ("16-bit params need fp32 master weights (pass master)"
                                        if master is None else "float32 params take no master (got one)"))
    for name, t in {"grad": grad, "master": master, **states}.items():
        if t is not None and t.numel() != param.numel():
            raise RuntimeError(f"{op}: {name} has {t.numel()} elements but param has {param.numel()}; "
                               "every flat buffer must have param's length")


def _c10_name(dtype: torch.dtype) -> str:
    return {torch.float32: "Float", torch.float64: "Double", torch.bfloat16: "BFloat16", torch.float16: "Half"}.get(
        dtype, str(dtype))


def _grad_scale(grad_sqnorm: torch.Tensor | None, max_grad_norm: float, skip_nonfinite: bool) -> float | None:
    """Clip coefficient as torch.nn.utils.clip_grad_norm_ forms it; None = skip this step (non-finite norm)."""
    if grad_sqnorm is None:
        if max_grad_norm > 0 or skip_nonfinite:
            raise RuntimeError("ftengine::*_step: clipping (max_grad_norm > 0) and skip_nonfinite need grad_sqnorm "
                             "(from ftengine::flat_grad_sqnorm)")
        return 1.0
    norm = grad_sqnorm.reshape(()).float().sqrt()
    if skip_nonfinite and not bool(torch.isfinite(norm)):
        return None
    if max_grad_norm <= 0:
        return 1.0
    return float(torch.clamp(torch.tensor(max_grad_norm, dtype=torch.float32) / (norm.cpu() + 1e-6), max=1.0))


def _trainable_slices(segments: torch.Tensor, steps: torch.Tensor) -> list[tuple[int, slice, int]]:
    """(row, slice, new step) for each trainable row; increments ``steps`` in place."""
    out = []
    for group, (offset, length, trainable) in enumerate(segments.tolist()):
        if trainable:
            steps[group] += 1
            out.append((group, slice(offset, offset + length), int(steps[group])))
    return out


def _group_updates(param: torch.Tensor, master: torch.Tensor | None, grad: torch.Tensor, segments: torch.Tensor,
                   hyper: torch.Tensor, steps: torch.Tensor, grad_sqnorm: torch.Tensor | None, max_grad_norm: float,
                   skip_nonfinite: bool) -> Iterator[tuple[list[float], slice, int, torch.Tensor, torch.Tensor]]:
    """What every update op shares: the skip/clip decision, then per trainable row (its hyper row, slice, new
    step, fp32 weights from the master copy when there is one, clipped fp32 grad). Nothing when the step is skipped."""
    scale = _grad_scale(grad_sqnorm, max_grad_norm, skip_nonfinite)
    if scale is None:
        return
    weights = master if master is not None else param
    rows = hyper.tolist()
    for group, sl, step in _trainable_slices(segments, steps):
        yield rows[group], sl, step, weights[sl].float(), grad[sl].float() * scale


def _drift(anchor: torch.Tensor | None, row: list[float], columns: int, sl: slice,
           w: torch.Tensor) -> tuple[float, torch.Tensor | None]:
    """(alpha, w - anchor) of an anchored row with alpha != 0, else (0.0, None): the anchor slice is not read."""
    alpha = row[columns] if anchor is not None else 0.0
    return (alpha, w - anchor[sl].float()) if alpha != 0 else (0.0, None)


def _store(param: torch.Tensor, master: torch.Tensor | None, sl: slice, w: torch.Tensor) -> None:
    """Write updated fp32 weights back: into the master copy and the 16-bit params, or into the params."""
    (master if master is not None else param)[sl].copy_(w)
    if master is not None:
        param[sl].copy_(w)


def adamw_step(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, master: torch.Tensor | None,
               grad: torch.Tensor, segments: torch.Tensor, hyper: torch.Tensor, steps: torch.Tensor,
               grad_sqnorm: torch.Tensor | None, max_grad_norm: float, skip_nonfinite: bool,
               anchor: torch.Tensor | None = None) -> None:
    """AdamW over the trainable rows, in torch.optim.AdamW's (single-tensor) operation order.

    ``hyper`` columns: lr, weight_decay, beta1, beta2, eps (+ l2sp when ``anchor`` is given: decoupled decay
    toward the anchor, see the L2-SP note above).
    """
    _check_flat("ftengine::adamw_step", param, grad, master, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq},
                anchor, hyper, 5)
    for row, sl, step, w, g in _group_updates(param, master, grad, segments, hyper, steps, grad_sqnorm,
                                              max_grad_norm, skip_nonfinite):
        lr, wd, beta1, beta2, eps = row[:5]
        alpha, drift = _drift(anchor, row, 5, sl, w)
        m, v = exp_avg[sl].float(), exp_avg_sq[sl].float()
        w.mul_(1 - lr * wd)
        if drift is not None:
            w.add_(drift, alpha=-(lr * alpha))
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        denom = (v.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        w.addcdiv_(m, denom, value=-step_size)
        _store(param, master, sl, w)
        exp_avg[sl].copy_(m)
        exp_avg_sq[sl].copy_(v)


def sgd_step(param: torch.Tensor, momentum_buffer: torch.Tensor | None, master: torch.Tensor | None,
             grad: torch.Tensor, segments: torch.Tensor, hyper: torch.Tensor, steps: torch.Tensor,
             grad_sqnorm: torch.Tensor | None, max_grad_norm: float, skip_nonfinite: bool,
             anchor: torch.Tensor | None = None) -> None:
    """SGD over the trainable rows in torch.optim.SGD's order (coupled weight decay, dampening 0).

    ``hyper`` columns: lr, weight_decay, momentum, nesterov (0/1) (+ l2sp when ``anchor`` is given: coupled decay
    toward the anchor, see the L2-SP note above). Without ``momentum_buffer`` it is plain SGD.
    """
    _check_flat("ftengine::sgd_step", param, grad, master, {"momentum_buffer": momentum_buffer}, anchor, hyper, 4)
    for row, sl, step, w, d in _group_updates(param, master, grad, segments, hyper, steps, grad_sqnorm,
                                              max_grad_norm, skip_nonfinite):
        lr, wd, momentum, nesterov = row[:4]
        alpha, drift = _drift(anchor, row, 4, sl, w)
        if wd != 0:
            d = d.add(w, alpha=wd)
        if drift is not None:
            d = d.add(drift, alpha=alpha)
        if momentum_buffer is not None and momentum != 0:
            buf = d.clone() if step == 1 else momentum_buffer[sl].float().mul_(momentum).add_(d)
            momentum_buffer[sl].copy_(buf)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        w.add_(d, alpha=-lr)
        _store(param, master, sl, w)
