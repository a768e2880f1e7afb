// Host-side argument checks of ftengine::gather_ragged, shared by the CPU and CUDA implementations.
// Per-example bounds are checked where the data lives: on the host (CPU) or in the kernel (CUDA).
#pragma once

#include <ATen/ATen.h>

namespace ftengine {

inline void check_gather_args(const at::Tensor& data, const at::Tensor& offsets, const at::Tensor& lengths,
                              const at::Tensor& index, int64_t max_len, at::ScalarType dtype) {
  const char* op = "ftengine::gather_ragged";
  TORCH_CHECK(data.dim() == 2, op, ": data must be 2-D (rows, features) (got shape ", data.sizes(), ")");
  TORCH_CHECK(data.size(1) <= 1 || data.stride(1) == 1, op, ": data rows must be contiguous (got strides ",
              data.strides(), ")");
  const std::pair<const at::Tensor*, const char*> tables[] = {{&offsets, "offsets"}, {&lengths, "lengths"},
                                                               {&index, "index"}};
  for (const auto& [t, name] : tables) {
    TORCH_CHECK(t->scalar_type() == at::kLong, op, ": ", name, " must be int64 (got ", t->scalar_type(), ")");
    TORCH_CHECK(t->dim() == 1, op, ": ", name, " must be 1-D (got shape ", t->sizes(), ")");
    TORCH_CHECK(t->device() == data.device(), op, ": ", name, " must be on data's device ", data.device(), " (got ",
                t->device(), ")");
  }
  TORCH_CHECK(offsets.size(0) == lengths.size(0), op, ": offsets and lengths must have one entry per example (got ",
              offsets.size(0), " and ", lengths.size(0), ")");
  TORCH_CHECK(max_len >= 0, op, ": max_len must be >= 0 (got ", max_len, ")");
  TORCH_CHECK(at::isFloatingType(dtype), op, ": dtype must be a floating type (got ", dtype, ")");
}

}  // namespace ftengine
