// Host-side argument checks shared by the CPU and CUDA implementations of the flat optimizer ops.
// Every message starts with the op name and says what was given and what is expected.
#pragma once

#include <ATen/ATen.h>

#include "ftengine/optim_math.h"

namespace ftengine {

inline bool is_float_kind(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; }

inline void check_flat(const char* op, const at::Tensor& t, const char* name, const at::Tensor& param) {
  TORCH_CHECK(t.dim() == 1 && t.is_contiguous(), op, ": ", name, " must be a contiguous 1-D flat buffer (got shape ",
              t.sizes(), ", strides ", t.strides(), ")");
  TORCH_CHECK(t.numel() == param.numel(), op, ": ", name, " has ", t.numel(), " elements but param has ", param.numel(),
              "; every flat buffer must have param's length");
  TORCH_CHECK(t.device() == param.device(), op, ": ", name, " is on ", t.device(), " but param is on ", param.device());
}

// Checks the tables and returns the number of groups G.
inline int64_t check_tables(const char* op, const at::Tensor& param, const at::Tensor& segments,
                            const at::Tensor& hyper, const at::Tensor& steps, int64_t hyper_cols) {
  TORCH_CHECK(segments.scalar_type() == at::kLong && segments.dim() == 2 && segments.size(1) == kSegCols &&
                  segments.is_contiguous(),
              op, ": segments must be a contiguous int64 [G, 3] table (offset, length, trainable) (got ",
              segments.scalar_type(), " ", segments.sizes(), ")");
  const int64_t groups = segments.size(0);
  TORCH_CHECK(hyper.scalar_type() == at::kDouble && hyper.dim() == 2 && hyper.size(0) == groups &&
                  hyper.size(1) == hyper_cols && hyper.is_contiguous(),
              op, ": hyper must be a contiguous float64 [", groups, ", ", hyper_cols, "] table (got ",
              hyper.scalar_type(), " ", hyper.sizes(), ")");
  TORCH_CHECK(steps.scalar_type() == at::kLong && steps.dim() == 1 && steps.numel() == groups && steps.is_contiguous(),
              op, ": steps must be a contiguous int64 [", groups, "] tensor (got ", steps.scalar_type(), " ",
              steps.sizes(), ")");
  for (const auto* t : {&segments, &hyper, &steps})
    TORCH_CHECK(t->device() == param.device(), op, ": tables must be on param's device ", param.device(), " (got ",
                t->device(), ")");
  return groups;
}

// param (fp32/bf16/fp16) with its grad (same dtype) and, for 16-bit params, the fp32 master weights.
inline void check_param(const char* op, const at::Tensor& param, const at::Tensor& grad,
                        const std::optional<at::Tensor>& master) {
  TORCH_CHECK(is_float_kind(param.scalar_type()), op, ": param must be float32, bfloat16 or float16 (got ",
              param.scalar_type(), ")");
  check_flat(op, param, "param", param);
  check_flat(op, grad, "grad", param);
  TORCH_CHECK(grad.scalar_type() == param.scalar_type(), op, ": grad dtype ", grad.scalar_type(),
              " differs from param dtype ", param.scalar_type());
  const bool low = param.scalar_type() != at::kFloat;
  TORCH_CHECK(low == (master.has_value() && master->defined()), op, ": ",
              low ? "16-bit params need fp32 master weights (pass master)" : "float32 params take no master (got one)");
  if (low) {
    check_flat(op, *master, "master", param);
    TORCH_CHECK(master->scalar_type() == at::kFloat, op, ": master must be float32 (got ", master->scalar_type(), ")");
  }
}

inline void check_state(const char* op, const at::Tensor& state, const char* name, const at::Tensor& param) {
  check_flat(op, state, name, param);
  TORCH_CHECK(state.scalar_type() == at::kFloat || state.scalar_type() == at::kBFloat16, op, ": ", name,
              " must be float32 or bfloat16 (got ", state.scalar_type(), ")");
}

inline void check_sqnorm(const char* op, const std::optional<at::Tensor>& sq, const at::Tensor& param) {
  if (!sq.has_value() || !sq->defined()) return;
  TORCH_CHECK(sq->numel() == 1 && sq->scalar_type() == at::kFloat && sq->device() == param.device(), op,
              ": grad_sqnorm must be a one-element float32 tensor on ", param.device(), " (got ", sq->scalar_type(),
              " ", sq->sizes(), " on ", sq->device(), ")");
}

}  // namespace ftengine
