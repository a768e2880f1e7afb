"""The one place where ``ftengine`` op schemas are defined (namespace ``ftengine``).

Every op gets: its schema, the pure-PyTorch reference (``reference.py``) as the default kernel
(``CompositeExplicitAutograd``: any device), and a fake kernel for meta tensors and ``torch.compile``.
Native kernels (csrc/cpu, csrc/cuda) override the default per device with ``TORCH_LIBRARY_IMPL``.
"""

from __future__ import annotations

import torch

from ftengine.kernels import reference

LIB = torch.library.Library("ftengine", "DEF")

# --- activation cache (ftengine/runtime/cache): ragged gather; CPU/CUDA kernels in csrc/*/gather_ragged.* ----------

LIB.define("gather_ragged(Tensor data, Tensor offsets, Tensor lengths, Tensor index, SymInt max_len, "
           "ScalarType dtype) -> (Tensor, Tensor)")
LIB.impl("gather_ragged", reference.gather_ragged, "CompositeExplicitAutograd")


@torch.library.register_fake("ftengine::gather_ragged", lib=LIB)
def _gather_ragged_fake(data: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor,
                        max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    batch = index.shape[0]
    return data.new_empty((batch, max_len, data.shape[1]), dtype=dtype), index.new_empty((batch, max_len))


# ---- flat per-group optimizer (semantics and table layouts: reference.py; native: csrc/cpu|cuda/flat_optim) ----
_STEP_TAIL = "Tensor grad, Tensor segments, Tensor hyper, Tensor(e!) steps, Tensor? grad_sqnorm, " \
             "float max_grad_norm, bool skip_nonfinite, Tensor? anchor=None) -> ()"
LIB.define("flat_grad_sqnorm(Tensor grad, Tensor segments) -> Tensor")
LIB.define("adamw_step(Tensor(a!) param, Tensor(b!) exp_avg, Tensor(c!) exp_avg_sq, Tensor(d!)? master, " + _STEP_TAIL)
LIB.define("sgd_step(Tensor(a!) param, Tensor(b!)? momentum_buffer, Tensor(d!)? master, " + _STEP_TAIL)
for _name in ("flat_grad_sqnorm", "adamw_step", "sgd_step"):
    LIB.impl(_name, getattr(reference, _name), "CompositeExplicitAutograd")


@torch.library.register_fake("ftengine::flat_grad_sqnorm", lib=LIB)
def _flat_grad_sqnorm_fake(grad: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    return grad.new_empty((), dtype=torch.float32)


@torch.library.register_fake("ftengine::adamw_step", lib=LIB)
def _adamw_step_fake(*args: object) -> None:
    return None  # in-place only


@torch.library.register_fake("ftengine::sgd_step", lib=LIB)
def _sgd_step_fake(*args: object) -> None:
    return None  # in-place only
