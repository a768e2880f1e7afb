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

// The optional L2-SP anchor: a flat fp32 or bf16 buffer of param's length.
inline bool check_anchor(const char* op, const std::optional<at::Tensor>& anchor, const at::Tensor& param) {
  if (!anchor.has_value() || !anchor->defined()) return false;
  check_flat(op, *anchor, "anchor", param);
  TORCH_CHECK(anchor->scalar_type() == at::kFloat || anchor->scalar_type() == at::kBFloat16, op,
              ": anchor must be float32 or bfloat16 (got ", anchor->scalar_type(), ")");
  return true;
}

// hyper's column count: the op's own, plus the l2sp column when an anchor is passed.
inline void check_hyper_cols(const char* op, const at::Tensor& hyper, int64_t cols, bool has_anchor) {
  TORCH_CHECK(hyper.dim() != 2 || hyper.size(1) == cols + (has_anchor ? 1 : 0), op, ": hyper must have ",
              cols + (has_anchor ? 1 : 0), " columns (", has_anchor ? "with" : "without",
              " an anchor: the l2sp column comes with it) (got ", hyper.size(1), ")");
}

// Every argument check of ftengine::adamw_step; returns the number of groups G.
inline int64_t check_adamw_args(const char* op, const at::Tensor& param, const at::Tensor& exp_avg,
                                const at::Tensor& exp_avg_sq, const std::optional<at::Tensor>& master,
                                const at::Tensor& grad, const at::Tensor& segments, const at::Tensor& hyper,
                                const at::Tensor& steps, const std::optional<at::Tensor>& grad_sqnorm,
                                const std::optional<at::Tensor>& anchor) {
  check_param(op, param, grad, master);
  check_state(op, exp_avg, "exp_avg", param);
  check_state(op, exp_avg_sq, "exp_avg_sq", param);
  TORCH_CHECK(exp_avg.scalar_type() == exp_avg_sq.scalar_type(), op, ": exp_avg (", exp_avg.scalar_type(),
              ") and exp_avg_sq (", exp_avg_sq.scalar_type(), ") must share a dtype");
  const bool has_anchor = check_anchor(op, anchor, param);
  check_hyper_cols(op, hyper, kAdamWCols, has_anchor);
  const int64_t groups = check_tables(op, param, segments, hyper, steps, kAdamWCols + (has_anchor ? 1 : 0));
  check_sqnorm(op, grad_sqnorm, param);
  return groups;
}

// Every argument check of ftengine::sgd_step; returns the number of groups G.
inline int64_t check_sgd_args(const char* op, const at::Tensor& param, const std::optional<at::Tensor>& momentum_buffer,
                              const std::optional<at::Tensor>& master, const at::Tensor& grad,
                              const at::Tensor& segments, const at::Tensor& hyper, const at::Tensor& steps,
                              const std::optional<at::Tensor>& grad_sqnorm,
                              const std::optional<at::Tensor>& anchor) {
  check_param(op, param, grad, master);
  if (momentum_buffer.has_value() && momentum_buffer->defined())
    check_state(op, *momentum_buffer, "momentum_buffer", param);
  const bool has_anchor = check_anchor(op, anchor, param);
  check_hyper_cols(op, hyper, kSgdCols, has_anchor);
  const int64_t groups = check_tables(op, param, segments, hyper, steps, kSgdCols + (has_anchor ? 1 : 0));
  check_sqnorm(op, grad_sqnorm, param);
  return groups;
}

// flat_grad_sqnorm's inputs: a float grad buffer and its [G, 3] segment table on the same device.
inline void check_sqnorm_inputs(const char* op, const at::Tensor& grad, const at::Tensor& segments) {
  TORCH_CHECK(is_float_kind(grad.scalar_type()), op, ": grad must be float32, bfloat16 or float16 (got ",
              grad.scalar_type(), ")");
  check_flat(op, grad, "grad", grad);
  TORCH_CHECK(segments.scalar_type() == at::kLong && segments.dim() == 2 && segments.size(1) == kSegCols &&
                  segments.is_contiguous() && segments.device() == grad.device(),
              op, ": segments must be a contiguous int64 [G, 3] table on grad's device (got ", segments.scalar_type(),
              " ", segments.sizes(), " on ", segments.device(), ")");
}

// Whether a grad_sqnorm was passed; clipping and the non-finite check cannot run without one.
inline bool require_sqnorm(const char* op, const std::optional<at::Tensor>& sq, double max_grad_norm,
                           bool skip_nonfinite) {
  const bool has = sq.has_value() && sq->defined();
  TORCH_CHECK(has || (max_grad_norm <= 0.0 && !skip_nonfinite), op,
              ": clipping (max_grad_norm > 0) and skip_nonfinite need grad_sqnorm (from ftengine::flat_grad_sqnorm)");
  return has;
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// Calls fn(tag) with a null pointer of the storage tag type matching `dtype` (float / bf16_t / fp16_t).
template <typename Fn>
void dispatch_float_kind(at::ScalarType dtype, const Fn& fn) {
  switch (dtype) {
    case at::kFloat: return fn(static_cast<float*>(nullptr));
    case at::kBFloat16: return fn(static_cast<bf16_t*>(nullptr));
    case at::kHalf: return fn(static_cast<fp16_t*>(nullptr));
    default: TORCH_INTERNAL_ASSERT(false, "unchecked dtype ", dtype);
  }
}

}  // namespace ftengine
