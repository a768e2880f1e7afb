// Placeholder op proving the build -> dispatcher chain on CUDA: out = x + alpha * y.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace ftengine {
namespace {

__global__ void scale_add_kernel(const float* x, const float* y, float* out, float alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] + alpha * y[i];
}

}  // namespace

at::Tensor scale_add_cuda(const at::Tensor& x, const at::Tensor& y, double alpha) {
  TORCH_CHECK(x.sizes() == y.sizes(), "ftengine::scale_add: x and y must have the same shape (got ", x.sizes(),
              " and ", y.sizes(), ")");
  TORCH_CHECK(x.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat,
              "ftengine::scale_add: CUDA kernel takes float32 (got ", x.scalar_type(), ", ", y.scalar_type(), ")");
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto yc = y.contiguous();
  auto out = at::empty_like(xc);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 4096));
  scale_add_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      xc.data_ptr<float>(), yc.data_ptr<float>(), out.data_ptr<float>(), static_cast<float>(alpha), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(ftengine, CUDA, m) { m.impl("scale_add", &scale_add_cuda); }

}  // namespace ftengine
