// Placeholder op proving the build -> dispatcher chain: out = x + alpha * y (reference: reference.scale_add).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

namespace ftengine {

at::Tensor scale_add_cpu(const at::Tensor& x, const at::Tensor& y, double alpha) {
  TORCH_CHECK(x.sizes() == y.sizes(), "ftengine::scale_add: x and y must have the same shape (got ", x.sizes(),
              " and ", y.sizes(), ")");
  TORCH_CHECK(x.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat,
              "ftengine::scale_add: CPU kernel takes float32 (got ", x.scalar_type(), ", ", y.scalar_type(), ")");
  auto xc = x.contiguous();
  auto yc = y.contiguous();
  auto out = at::empty_like(xc);
  const float* px = xc.data_ptr<float>();
  const float* py = yc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const float a = static_cast<float>(alpha);
  at::parallel_for(0, xc.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) po[i] = px[i] + a * py[i];
  });
  return out;
}

TORCH_LIBRARY_IMPL(ftengine, CPU, m) { m.impl("scale_add", &scale_add_cpu); }

}  // namespace ftengine
