// ftengine::gather_ragged on CUDA: assemble a padded batch from ragged cached activations in one pass.
// Reference: ftengine/kernels/reference.py::gather_ragged; contract in csrc/cpu/gather_ragged.cpp.
//
// One block per output row (b, t) (grid-stride over rows); the block's threads stride over the D features,
// so each warp reads and writes contiguous runs. Padding rows are zero-filled and the mask written in the
// same launch: no separate memset, no host synchronisation. Index bounds are checked on the device
// (CUDA_KERNEL_ASSERT) because checking on the host would need a device->host copy per batch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "ftengine/gather_args.h"

namespace ftengine {
namespace {

template <typename dst_t, typename src_t>
__device__ __forceinline__ dst_t convert_element(src_t v) {
  // Through float (fast for half/bf16), or through double when either side is fp64 (exact).
  if constexpr (std::is_same_v<src_t, double> || std::is_same_v<dst_t, double>) {
    return static_cast<dst_t>(static_cast<double>(v));
  } else {
    return static_cast<dst_t>(static_cast<float>(v));
  }
}

template <typename src_t, typename dst_t>
__global__ void gather_ragged_kernel(const src_t* __restrict__ data, int64_t row_stride, int64_t num_rows_data,
                                     const int64_t* __restrict__ offsets, const int64_t* __restrict__ lengths,
                                     const int64_t* __restrict__ index, int64_t num_examples, int64_t max_len,
                                     int64_t D, int64_t rows, dst_t* __restrict__ out, int64_t* __restrict__ mask) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / max_len;
    const int64_t t = r - b * max_len;
    const int64_t i = index[b];
    CUDA_KERNEL_ASSERT(i >= 0 && i < num_examples);
    const int64_t n = min(lengths[i], max_len);
    dst_t* o = out + r * D;
    if (t < n) {
      const int64_t src_row = offsets[i] + t;
      CUDA_KERNEL_ASSERT(src_row >= 0 && src_row < num_rows_data);
      const src_t* s = data + src_row * row_stride;
      for (int64_t d = threadIdx.x; d < D; d += blockDim.x) o[d] = convert_element<dst_t>(s[d]);
    } else {
      for (int64_t d = threadIdx.x; d < D; d += blockDim.x) o[d] = static_cast<dst_t>(0.0f);
    }
    if (threadIdx.x == 0) mask[r] = t < n ? 1 : 0;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gather_ragged_cuda(const at::Tensor& data, const at::Tensor& offsets,
                                                      const at::Tensor& lengths, const at::Tensor& index,
                                                      int64_t max_len, at::ScalarType dtype) {
  check_gather_args(data, offsets, lengths, index, max_len, dtype);

  c10::cuda::CUDAGuard guard(data.device());
  const int64_t B = index.size(0), D = data.size(1);
  auto out = at::empty({B, max_len, D}, data.options().dtype(dtype));
  auto mask = at::empty({B, max_len}, data.options().dtype(at::kLong));
  const int64_t rows = B * max_len;
  if (rows == 0) return {out, mask};
  auto idx = index.contiguous();
  auto off = offsets.contiguous();
  auto len = lengths.contiguous();
  const int threads = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (D + 31) / 32 * 32)));
  const int blocks = static_cast<int>(std::min<int64_t>(rows, 1 << 20));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, data.scalar_type(), "gather_ragged_src", [&] {
    using src_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_ragged_dst", [&] {
      gather_ragged_kernel<src_t, scalar_t><<<blocks, threads, 0, stream>>>(
          data.const_data_ptr<src_t>(), data.stride(0), data.size(0), off.const_data_ptr<int64_t>(),
          len.const_data_ptr<int64_t>(), idx.const_data_ptr<int64_t>(), offsets.size(0), max_len, D, rows,
          out.mutable_data_ptr<scalar_t>(), mask.mutable_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, mask};
}

TORCH_LIBRARY_IMPL(ftengine, CUDA, m) { m.impl("gather_ragged", &gather_ragged_cuda); }

}  // namespace ftengine
