"""FlatOptimizer: per-layer-group AdamW / SGD over flat buffers, one fused kernel launch per step.

Every parameter is registered from step 0, laid out group by group in one flat buffer per (device, dtype)
(``ftengine.kernels.flat``); ``group["trainable"]`` is the mask. A step updates every trainable group in one
``ftengine::adamw_step`` / ``ftengine::sgd_step`` call (native CPU/CUDA kernel, or the PyTorch reference); frozen
groups are neither read nor written, and flipping a flag reallocates nothing. As in torch.optim, a parameter whose
``.grad`` is None at the step (requires_grad False, or unused by this step's forward) is not touched, and each
parameter keeps its own step count: a group unfrozen later starts its bias correction at 1, exactly like a
torch.optim group added at that point.

L2-SP (Li et al. 2018): with ``anchor_dtype`` set, a group's ``l2sp`` (alpha, default 0) pulls its weights toward
their values when the group first trained (the starting, pretrained weights), in the same launch: AdamW
``w = w*(1 - lr*wd) - lr*alpha*(w - w0)`` (decoupled, before the Adam update), SGD ``d = g + wd*w + alpha*(w - w0)``
(coupled). The anchors are kept in ``anchor_dtype`` (bf16 halves their bytes) and saved in ``state_dict``.

    opt = FlatOptimizer([dict(params=..., name="encoder.layer.0", lr=2e-5, weight_decay=0.01, trainable=False),
                         dict(params=..., name="head", lr=1e-3, weight_decay=0.01, trainable=True)],
                        max_grad_norm=1.0)
    loss.backward(); info = opt.step(); opt.zero_grad()      # info = {"grad_norm": 0.73, "skipped": False}

Parameters become views into the flat buffer: build the optimizer AFTER ``model.to(device)``, and clone
``model.state_dict()`` tensors before saving them with safetensors (they share one storage). With 16-bit
parameters the fp32 master copy holds the true weights: after writing parameters from outside (loading a model
checkpoint), call ``reload_params()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ftengine import kernels
from ftengine.errors import RunError
from ftengine.kernels import ops, reference
from ftengine.kernels.flat import HYPER_COLUMNS, FlatBucket, exact_view

_STATE_NAMES = {"adamw": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}
_STATE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class FlatOptimizer(torch.optim.Optimizer):
    """AdamW (torch.optim.AdamW semantics) or SGD with momentum over per-layer groups with a trainable mask.

    Args:
        param_groups: dicts with ``params``, ``name``, ``lr``, ``weight_decay``, ``trainable`` (and optionally
            ``betas``, ``eps``, ``momentum``, ``nesterov`` overriding the defaults below).
        kind: "adamw" or "sgd".
        lr: default learning rate for groups that give none.
        weight_decay: default weight decay (decoupled for AdamW, L2 as in torch.optim.SGD for SGD).
        betas: AdamW betas.
        eps: AdamW epsilon.
        momentum: SGD momentum (0: none, no buffer).
        nesterov: SGD Nesterov momentum.
        max_grad_norm: clip the global grad norm of the trainable groups to this (None: no clipping).
        skip_nonfinite: skip (and report) a step whose grad norm is inf/nan.
        state_dtype: "fp32" or "bf16" moments (bf16: 8 fewer bytes moved per parameter and step).
        backend: "auto" (native kernel where available), "native" (require it) or "reference" (pure PyTorch).
        anchor_dtype: "fp32" or "bf16" L2-SP anchors, None for no L2-SP (groups' ``l2sp`` must then be 0).
        weights_dir: CPU: keep the weights on a private mapping of a file in this folder, so that ``page_out`` can
            hand back the pages of groups no stage reads for a while (None: anonymous memory).
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], *, kind: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 momentum: float = 0.9, nesterov: bool = False, max_grad_norm: float | None = None,
                 skip_nonfinite: bool = True, state_dtype: str = "fp32", backend: str = "auto",
                 anchor_dtype: str | None = None, weights_dir: str | Path | None = None) -> None:
        _check_choice("kind", kind, ("adamw", "sgd"))
        if anchor_dtype is not None:
            _check_choice("anchor_dtype", anchor_dtype, tuple(_STATE_DTYPES))
        _check_choice("state_dtype", state_dtype, tuple(_STATE_DTYPES))
        _check_choice("backend", backend, ("auto", "native", "reference"))
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"FlatOptimizer: max_grad_norm must be > 0 or None (got {max_grad_norm})")
        defaults = dict(lr=lr, weight_decay=weight_decay, trainable=True, betas=tuple(betas), eps=eps,
                        momentum=momentum, nesterov=nesterov, l2sp=0.0)
        self.kind, self.backend = kind, backend
        self.max_grad_norm, self.skip_nonfinite = max_grad_norm, skip_nonfinite
        self.state_dtype = _STATE_DTYPES[state_dtype]
        self.anchor_dtype = _STATE_DTYPES[anchor_dtype] if anchor_dtype is not None else None
        self._building = True
        super().__init__(list(param_groups), defaults)
        self._building = False
        for i, group in enumerate(self.param_groups):
            group.setdefault("name", f"group{i}")
            _check_group(i, group, kind, self.anchor_dtype is not None)
        self._buckets = self._build_buckets(weights_dir)
        self._clean_frozen: set[tuple[int, int]] = set()  # (bucket id, group index) frozen with zeroed grads
        if backend == "native":
            self._require_native()

    # ---- construction -------------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Groups are fixed at construction (they are laid out in flat buffers); frozen ones go in with trainable=False."""
        if not getattr(self, "_building", False):
            raise ValueError("FlatOptimizer.add_param_group: groups are fixed at construction (got a new group "
                             f"{param_group.get('name')!r}); pass every group up front, frozen ones with trainable=False")
        super().add_param_group(param_group)

    def _build_buckets(self, weights_dir: str | Path | None) -> list[FlatBucket]:
        keys: dict[tuple[torch.device, torch.dtype], None] = {}
        for group in self.param_groups:
            for p in group["params"]:
                keys.setdefault((p.device, p.dtype), None)
        devices = sorted({str(d) for d, _ in keys})
        if len(devices) > 1:
            raise ValueError(f"FlatOptimizer: parameters on several devices ({', '.join(devices)}); move the model "
                             "to one device first (or use one optimizer per device)")
        momentum = self.kind == "sgd" and any(g["momentum"] != 0 for g in self.param_groups)
        names = _STATE_NAMES[self.kind] if (self.kind == "adamw" or momentum) else ()
        columns = len(HYPER_COLUMNS[self.kind]) + (self.anchor_dtype is not None)  # + l2sp with an anchor
        return [FlatBucket([[p for p in g["params"] if (p.device, p.dtype) == key] for g in self.param_groups],
                           names, self.state_dtype, columns, self.anchor_dtype, weights_dir) for key in keys]

    def _require_native(self) -> None:
        device = self._buckets[0].device if self._buckets else torch.device("cpu")
        try:
            kernels.require_native(device)
        except kernels.NativeUnavailableError as exc:
            raise RunError(f"optimizer.fused: {exc}; use fused: auto (falls back to the PyTorch reference) or "
                           "rebuild with a compiler/nvcc") from None

    # ---- the step -----------------------------------------------------------------------------------------------

    def _hyper_row(self, group: dict[str, Any]) -> list[float]:
        extra = [float(group["l2sp"])] if self.anchor_dtype is not None else []
        if self.kind == "adamw":
            beta1, beta2 = group["betas"]
            return [group["lr"], group["weight_decay"], beta1, beta2, group["eps"], *extra]
        return [group["lr"], group["weight_decay"], group["momentum"], float(bool(group["nesterov"])), *extra]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> dict[str, Any]:  # type: ignore[override]
        """Update every trainable group once.

        Returns:
            dict(grad_norm=global grad norm of the trainable groups before clipping (nan when neither clipping nor
            the non-finite check asked for it), skipped=whether the step was skipped for a non-finite norm),
            plus ``loss`` when a closure was given. Reading the norm synchronizes with a CUDA device.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        trainable = [int(bool(g["trainable"])) for g in self.param_groups]
        rows = [self._hyper_row(g) for g in self.param_groups]
        for bucket in self._buckets:
            bucket.sync_tables(bucket.fold_and_mark(trainable), rows)
            bucket.prepare_state(trainable)
        use_ref = self.backend == "reference"
        sqnorm = None
        if (self.max_grad_norm is not None or self.skip_nonfinite) and self._buckets:
            norm_op = reference.flat_grad_sqnorm if use_ref else ops.flat_grad_sqnorm
            parts = [norm_op(b.grad, b.segments) for b in self._buckets]
            sqnorm = parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        clip = float(self.max_grad_norm or 0.0)
        skip = self.skip_nonfinite and sqnorm is not None
        for b in self._buckets:
            if self.kind == "adamw":
                step_op = reference.adamw_step if use_ref else ops.adamw_step
                step_op(b.param, b.state["exp_avg"], b.state["exp_avg_sq"], b.master, b.grad, b.segments, b.hyper,
                        b.steps, sqnorm, clip, skip, b.anchor)
            else:
                step_op = reference.sgd_step if use_ref else ops.sgd_step
                step_op(b.param, b.state.get("momentum_buffer"), b.master, b.grad, b.segments, b.hyper, b.steps,
                        sqnorm, clip, skip, b.anchor)
        norm = math.sqrt(float(sqnorm)) if sqnorm is not None else math.nan
        out: dict[str, Any] = dict(grad_norm=norm, skipped=skip and not math.isfinite(norm))
        if closure is not None:
            out["loss"] = loss
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients for the next backward pass, as torch.optim does.

        ``set_to_none=True`` (the default) sets every ``.grad`` to None: a parameter that the next forward does not
        use keeps None and is not stepped; the others get theirs folded into the flat buffer during backward.
        ``set_to_none=False`` zeroes the trainable groups' gradient views instead (those parameters are then all
        stepped, zero grad or not, as in torch). There a frozen group's slice is zeroed once when it becomes frozen
        and then left alone, so a head-only stage on a 22.7M-parameter backbone zeroes the head's bytes, not 91 MB.
        """
        if set_to_none:
            for bucket in self._buckets:
                for p, _ in bucket.slots:
                    p.grad = None
                bucket.hook_grads()  # parameters that began to require grad since the last call
            return
        for bucket in self._buckets:
            for index, (group, (offset, length)) in enumerate(zip(self.param_groups, bucket.layout.segments)):
                key = (id(bucket), index)
                if group["trainable"]:
                    self._clean_frozen.discard(key)
                elif key in self._clean_frozen or length == 0:
                    continue
                else:
                    self._clean_frozen.add(key)
                bucket.grad[offset:offset + length].zero_()
            bucket.rebind_grads()

    # ---- mask and bookkeeping -----------------------------------------------------------------------------------

    def group_steps(self) -> list[int]:
        """Per group, the most steps any of its parameters took (synchronizes with a CUDA device)."""
        counts = [0] * len(self.param_groups)
        for b in self._buckets:
            for (_, _, g), step in zip(b.layout.rows, b.steps.tolist()):
                counts[g] = max(counts[g], step)
        return counts

    @torch.no_grad()
    def reload_params(self) -> None:
        """Refresh the fp32 master weights from the (16-bit) parameters after they were written from outside."""
        for b in self._buckets:
            if b.master is not None:
                b.master.copy_(b.param)

    def page_out(self, groups: Iterable[int]) -> int:
        """Hand back the resident weight pages of these groups (indices into ``param_groups``) where they are clean
        pages of the weights file (``weights_dir``); a later read brings them back. Returns the bytes advised."""
        groups = list(groups)
        return sum(b.page_out(groups) for b in self._buckets)

    @property
    def buckets(self) -> list[FlatBucket]:
        """The flat buffers, one per (device, dtype) (for benchmarks and tests)."""
        return self._buckets

    # ---- state dict (torch.optim layout: per-parameter state, so it also loads into torch.optim.AdamW / SGD) ---

    def _slots(self) -> list[list[tuple[torch.nn.Parameter, FlatBucket, int, int]]]:
        """Per group, per parameter: (parameter, its bucket, its offset there, its row in the bucket's tables)."""
        where = {id(p): (b, o, row) for b in self._buckets for row, (p, o) in enumerate(b.slots)}
        return [[(p, *where[id(p)]) for p in g["params"]] for g in self.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Per-parameter state as torch.optim keeps it (``step`` float32 tensor, moments), for groups that stepped.

        The moments share memory with their slices of the flat buffers, on storages of exactly those bytes
        (:func:`~ftengine.kernels.flat.exact_view`): a plain view would make ``torch.save`` write the whole buffer
        (every group's state, 2 x 91 MB for MiniLM's AdamW moments) however few groups stepped, and a copy would hold
        the state twice while it is written. Like torch.optim's, they change with the next step: save or copy them
        first.
        16-bit parameters also carry ``master``, their fp32 weights. Loads into this class or into
        torch.optim.AdamW / SGD.
        """
        steps = {id(b): b.steps.tolist() for b in self._buckets}
        groups, state, index = [], {}, 0
        for group, slots in zip(self.param_groups, self._slots()):
            ids = list(range(index, index + len(slots)))
            index += len(slots)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
            for pid, (p, b, o, row) in zip(ids, slots):
                step = steps[id(b)][row]
                if step == 0:
                    continue  # like torch: no state before a parameter's first update
                entry = {"step": torch.tensor(float(step), dtype=torch.float32)}
                entry.update({name: exact_view(flat[o:o + p.numel()].view_as(p)) for name, flat in b.state.items()})
                if b.master is not None:
                    entry["master"] = exact_view(b.master[o:o + p.numel()].view_as(p))
                if b.anchor is not None:
                    entry["anchor"] = exact_view(b.anchor[o:o + p.numel()].view_as(p))
                state[pid] = entry
        return {"state": state, "param_groups": groups}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore group settings (lr, trainable, ...), step counts, moments and master weights.

        The groups must match this optimizer's (count, parameters per group, names); a parameter without saved
        state gets zero moments and step 0, as a parameter that never stepped.
        """
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        where = "FlatOptimizer.load_state_dict"
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state has {len(saved_groups)} groups but this optimizer has "
                             f"{len(self.param_groups)}; build the optimizer with the groups it was saved with")
        steps = {id(b): [0] * len(b.slots) for b in self._buckets}
        for i, (mine, saved, slots) in enumerate(zip(self.param_groups, saved_groups, self._slots())):
            if len(saved["params"]) != len(slots) or saved.get("name", mine["name"]) != mine["name"]:
                raise ValueError(f"{where}: group {i} was saved as {saved.get('name')!r} with {len(saved['params'])} "
                                 f"parameters but is {mine['name']!r} with {len(slots)}; the model's groups changed")
            for pid, (p, b, o, row) in zip(saved["params"], slots):
                entry = saved_state.get(pid, saved_state.get(str(pid), {}))
                steps[id(b)][row] = int(entry["step"]) if "step" in entry else 0
                for name, flat in b.state.items():
                    view = flat[o:o + p.numel()]
                    if name in entry:
                        view.copy_(entry[name].reshape(-1))
                    else:
                        view.zero_()
                if b.master is not None:
                    src = entry.get("master", b.param[o:o + p.numel()])
                    b.master[o:o + p.numel()].copy_(src.reshape(-1))
                if b.anchor is not None:  # a parameter that never stepped still has its starting weights
                    src = entry.get("anchor", (b.master if b.master is not None else b.param)[o:o + p.numel()])
                    b.anchor[o:o + p.numel()].copy_(src.reshape(-1))
            mine.update({k: v for k, v in saved.items() if k != "params"})
        for b in self._buckets:
            b.steps.copy_(torch.tensor(steps[id(b)], dtype=torch.int64))
            b.mark_state_ready()
            b.invalidate_tables()

def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"FlatOptimizer: {name} must be one of {', '.join(map(repr, choices))} (got {value!r})")


def _check_group(index: int, group: dict[str, Any], kind: str, anchored: bool) -> None:
    where = f"FlatOptimizer: param_groups[{index}] ({group['name']!r})"
    if not group["l2sp"] >= 0 or (group["l2sp"] and not anchored):
        raise ValueError(f"{where}: l2sp must be >= 0, and > 0 only with anchor_dtype set (got {group['l2sp']}); "
                         "pass anchor_dtype='fp32' or 'bf16' to keep starting weights")
    if not group["lr"] >= 0:
        raise ValueError(f"{where}: lr must be >= 0 (got {group['lr']})")
    if not group["weight_decay"] >= 0:
        raise ValueError(f"{where}: weight_decay must be >= 0 (got {group['weight_decay']})")
    if kind == "adamw" and not all(0 <= b < 1 for b in group["betas"]):
        raise ValueError(f"{where}: betas must be in [0, 1) (got {group['betas']})")
    for p in group["params"]:
        if not p.is_floating_point() or p.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"{where}: parameters must be float32, bfloat16 or float16 (got {p.dtype}); "
                             "cast the model first")
