// CUDA kernels of the flat per-group optimizer: ftengine::flat_grad_sqnorm, ftengine::adamw_step, ftengine::sgd_step.
// Reference (the executable specification): ftengine/kernels/reference.py. Math: ftengine/optim_math.h.
// "Group" below is one row of the tables (FlatOptimizer: one parameter, see optim_math.h).
//
// Layout of the work: the flat buffer is cut into tiles of kTile = 256 threads x 8 elements; a grid sized to the SM
// count (occupancy x SMs) grid-strides over the tiles. Each block looks up the group of its tile once (binary search
// in the segment table); a tile inside a frozen group is skipped without touching its data. Each thread moves 8
// contiguous elements with 16-byte vector loads/stores (fp32 arrays: two of them) and does the math in fp32.
//
// CUDA-graph capturable: nothing here reads device memory on the host. Per step, a one-block prologue reads the
// grad norm, decides skip / clip scale, increments the step of every trainable group and writes the per-group
// coefficients (lr, bias corrections: from the device-side tables) that the single update launch then reads.
// Requirements (checked on CPU; on CUDA they would need a device->host read, so the kernels clamp instead and
// never access out of bounds): segments sorted by offset, non-overlapping, inside the buffer.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

#include "ftengine/flat_args.h"
#include "ftengine/optim_math.h"

namespace ftengine {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;
constexpr int64_t kTile = kThreads * kVec;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

struct Seg {
  int64_t begin, end;
  bool trainable;
};

__device__ __forceinline__ Seg load_seg(const int64_t* seg, int64_t g, int64_t numel) {
  int64_t off = seg[g * kSegCols], len = seg[g * kSegCols + 1];
  off = off < 0 ? 0 : (off > numel ? numel : off);
  len = len < 0 ? 0 : (len > numel - off ? numel - off : len);
  return {off, off + len, seg[g * kSegCols + 2] != 0};
}

// Last group whose offset is <= e (or 0).
__device__ __forceinline__ int64_t find_group(const int64_t* seg, int64_t groups, int64_t e) {
  int64_t lo = 0, hi = groups;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (seg[mid * kSegCols] <= e) lo = mid; else hi = mid;
  }
  return lo;
}

template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&out)[kVec]) {
  const auto pack = *reinterpret_cast<const Pack<T, kVec>*>(p);
#pragma unroll
  for (int j = 0; j < kVec; ++j) out[j] = to_float(pack.v[j]);
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&in)[kVec]) {
  Pack<T, kVec> pack;
#pragma unroll
  for (int j = 0; j < kVec; ++j) pack.v[j] = from_float<T>(in[j]);
  *reinterpret_cast<Pack<T, kVec>*>(p) = pack;
}

// Calls fn(group, first, count, vector_ok) for each thread's 8-element chunk of every tile; `group` is the group
// holding elements [first, first + count). The tile's group is looked up once per block; chunks that straddle a
// group boundary (layouts without padding) are split per element.
template <typename Fn>
__device__ __forceinline__ void for_each_chunk(const int64_t* seg, int64_t groups, int64_t numel, bool vec_ok,
                                               const Fn& fn) {
  const int64_t tiles = (numel + kTile - 1) / kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t g0 = find_group(seg, groups, tile * kTile);  // block-uniform
    const int64_t e = tile * kTile + threadIdx.x * kVec;
    if (e >= numel) continue;
    const int64_t n = numel - e < kVec ? numel - e : kVec;
    int64_t g = g0;
    Seg s = load_seg(seg, g, numel);
    while (e >= s.end && g + 1 < groups && seg[(g + 1) * kSegCols] <= e) s = load_seg(seg, ++g, numel);
    if (e >= s.begin && e + n <= s.end) {
      if (s.trainable) fn(g, e, n, vec_ok && n == kVec && (e % kVec) == 0);
      continue;
    }
    for (int64_t i = e; i < e + n; ++i) {  // chunk crosses a boundary: one element at a time
      while (i >= s.end && g + 1 < groups && seg[(g + 1) * kSegCols] <= i) s = load_seg(seg, ++g, numel);
      if (s.trainable && i >= s.begin && i < s.end) fn(g, i, 1, false);
    }
  }
}

template <typename G>
__global__ void __launch_bounds__(kThreads) sqnorm_partial_kernel(const G* grad, const int64_t* seg, int64_t groups,
                                                                  int64_t numel, bool vec_ok, float* partial) {
  float acc = 0.0f;
  for_each_chunk(seg, groups, numel, vec_ok, [&](int64_t, int64_t first, int64_t count, bool vec) {
    if (vec) {
      float x[kVec];
      load8(grad + first, x);
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc += x[j] * x[j];
    } else {
      for (int64_t i = first; i < first + count; ++i) acc += to_float(grad[i]) * to_float(grad[i]);
    }
  });
  __shared__ float warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o /= 2) acc += __shfl_down_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) sum += warp_sums[w];
    partial[blockIdx.x] = sum;
  }
}

// Sums the per-block partials in a fixed order (deterministic) in double.
__global__ void sqnorm_final_kernel(const float* partial, int n, float* out) {
  __shared__ double sums[kThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += kThreads) acc += partial[i];
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) sums[threadIdx.x] += sums[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(sums[0]);
}

__device__ __forceinline__ void make_coeffs(AdamWCoeffs* c, const double* h, int64_t step, float s, bool active,
                                            bool has_anchor) {
  *c = adamw_coeffs(h, step, s, active, has_anchor);
}
__device__ __forceinline__ void make_coeffs(SgdCoeffs* c, const double* h, int64_t step, float s, bool active,
                                            bool has_anchor) {
  *c = sgd_coeffs(h, step, s, active, has_anchor);
}

// One block: skip / clip decision, step counts, per-group coefficients for the update launch. `cols` is the hyper
// table's width (the op's columns, + 1 for l2sp when an anchor is passed).
template <typename Coeffs>
__global__ void prologue_kernel(const int64_t* seg, const double* hyper, int cols, bool has_anchor, int64_t* steps,
                                int64_t groups, const float* sqnorm, double max_norm, bool skip_nonfinite,
                                Coeffs* coeffs) {
  float scale = 1.0f;
  const bool take = sqnorm == nullptr || grad_scale_from_sqnorm(*sqnorm, max_norm, skip_nonfinite, &scale);
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    const bool active = take && seg[g * kSegCols + 2] != 0;
    if (active) steps[g] += 1;
    make_coeffs(&coeffs[g], hyper + g * cols, steps[g], scale, active, has_anchor);
  }
}

// One chunk of AdamW; kAnchor (L2-SP) also reads the anchor (A: float or bf16_t storage).
template <bool kAnchor, typename G, typename S, typename A, bool kLow>
__device__ __forceinline__ void adamw_chunk(float* w, G* low, const G* grad, S* m, S* v, const A* anchor,
                                            int64_t first, int64_t count, bool vec, const AdamWCoeffs& c) {
  if (vec) {
    float wr[kVec], gr[kVec], mr[kVec], vr[kVec], ar[kVec] = {};
    load8(w + first, wr); load8(grad + first, gr); load8(m + first, mr); load8(v + first, vr);
    if constexpr (kAnchor) load8(anchor + first, ar);
#pragma unroll
    for (int j = 0; j < kVec; ++j) adamw_element<kAnchor>(wr[j], gr[j], mr[j], vr[j], c, ar[j]);
    store8(w + first, wr); store8(m + first, mr); store8(v + first, vr);
    if constexpr (kLow) store8(low + first, wr);
    return;
  }
  for (int64_t i = first; i < first + count; ++i) {
    float wi = w[i], mi = to_float(m[i]), vi = to_float(v[i]), ai = 0.0f;
    if constexpr (kAnchor) ai = to_float(anchor[i]);
    adamw_element<kAnchor>(wi, to_float(grad[i]), mi, vi, c, ai);
    w[i] = wi; m[i] = from_float<S>(mi); v[i] = from_float<S>(vi);
    if constexpr (kLow) low[i] = from_float<G>(wi);
  }
}

// kAnchor: an anchor operand was passed (rows with alpha == 0 still take the plain path and never read it).
template <typename G, typename S, bool kLow, typename A, bool kAnchor>
__global__ void __launch_bounds__(kThreads) adamw_kernel(float* w, G* low, const G* grad, S* m, S* v,
                                                         const A* anchor, const int64_t* seg, int64_t groups,
                                                         int64_t numel, bool vec_ok, const AdamWCoeffs* coeffs) {
  for_each_chunk(seg, groups, numel, vec_ok, [&](int64_t g, int64_t first, int64_t count, bool vec) {
    const AdamWCoeffs c = coeffs[g];
    if (!c.active) return;
    if (kAnchor && c.anchored)
      adamw_chunk<true, G, S, A, kLow>(w, low, grad, m, v, anchor, first, count, vec, c);
    else
      adamw_chunk<false, G, S, A, kLow>(w, low, grad, m, v, anchor, first, count, vec, c);
  });
}

// One chunk of SGD; kAnchor as in adamw_chunk.
template <bool kAnchor, typename G, typename S, typename A, bool kLow, bool kBuf>
__device__ __forceinline__ void sgd_chunk(float* w, G* low, const G* grad, S* buf, const A* anchor, int64_t first,
                                          int64_t count, bool vec, const SgdCoeffs& c) {
  if (vec) {
    float wr[kVec], gr[kVec], br[kVec] = {}, ar[kVec] = {};
    load8(w + first, wr); load8(grad + first, gr);
    if constexpr (kBuf) load8(buf + first, br);
    if constexpr (kAnchor) load8(anchor + first, ar);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sgd_element<kAnchor>(wr[j], gr[j], br[j], kBuf, c, ar[j]);
    store8(w + first, wr);
    if constexpr (kBuf) store8(buf + first, br);
    if constexpr (kLow) store8(low + first, wr);
    return;
  }
  for (int64_t i = first; i < first + count; ++i) {
    float wi = w[i], bi = 0.0f, ai = 0.0f;
    if constexpr (kBuf) bi = to_float(buf[i]);
    if constexpr (kAnchor) ai = to_float(anchor[i]);
    sgd_element<kAnchor>(wi, to_float(grad[i]), bi, kBuf, c, ai);
    w[i] = wi;
    if constexpr (kBuf) buf[i] = from_float<S>(bi);
    if constexpr (kLow) low[i] = from_float<G>(wi);
  }
}

template <typename G, typename S, bool kLow, bool kBuf, typename A, bool kAnchor>
__global__ void __launch_bounds__(kThreads) sgd_kernel(float* w, G* low, const G* grad, S* buf, const A* anchor,
                                                       const int64_t* seg, int64_t groups, int64_t numel,
                                                       bool vec_ok, const SgdCoeffs* coeffs) {
  for_each_chunk(seg, groups, numel, vec_ok, [&](int64_t g, int64_t first, int64_t count, bool vec) {
    const SgdCoeffs c = coeffs[g];
    if (!c.active) return;
    if (kAnchor && c.anchored)
      sgd_chunk<true, G, S, A, kLow, kBuf>(w, low, grad, buf, anchor, first, count, vec, c);
    else
      sgd_chunk<false, G, S, A, kLow, kBuf>(w, low, grad, buf, anchor, first, count, vec, c);
  });
}

// ---- host side ---------------------------------------------------------------------------------------------------

template <typename Kernel>
int grid_for(Kernel kernel, int64_t numel) {
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t tiles = (numel + kTile - 1) / kTile;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tiles, sms * std::max(per_sm, 1))));
}

bool aligned32(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 32 == 0; }

// Calls fn(anchor_ptr, std::bool_constant<has_anchor>) with the anchor's storage type (float* when absent: unread).
template <typename Fn>
void dispatch_anchor(const std::optional<at::Tensor>& anchor, const Fn& fn) {
  if (!anchor.has_value() || !anchor->defined()) return fn(static_cast<const float*>(nullptr), std::false_type{});
  if (anchor->scalar_type() == at::kBFloat16) return fn(static_cast<const bf16_t*>(ptr<bf16_t>(*anchor)), std::true_type{});
  fn(static_cast<const float*>(ptr<float>(*anchor)), std::true_type{});
}

const float* sqnorm_ptr(const char* op, const std::optional<at::Tensor>& sq, double max_norm, bool skip_nonfinite) {
  return require_sqnorm(op, sq, max_norm, skip_nonfinite) ? sq->data_ptr<float>() : nullptr;
}

}  // namespace

at::Tensor flat_grad_sqnorm_cuda(const at::Tensor& grad, const at::Tensor& segments) {
  const char* op = "ftengine::flat_grad_sqnorm";
  check_sqnorm_inputs(op, grad, segments);
  c10::cuda::CUDAGuard guard(grad.device());
  auto out = at::zeros({}, grad.options().dtype(at::kFloat));
  if (grad.numel() == 0 || segments.size(0) == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  dispatch_float_kind(grad.scalar_type(), [&](auto tag) {
    using G = std::remove_pointer_t<decltype(tag)>;
    const int grid = grid_for(sqnorm_partial_kernel<G>, grad.numel());
    auto partial = at::empty({grid}, grad.options().dtype(at::kFloat));
    sqnorm_partial_kernel<G><<<grid, kThreads, 0, stream>>>(ptr<G>(grad), segments.data_ptr<int64_t>(),
                                                            segments.size(0), grad.numel(), aligned32(grad),
                                                            partial.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    sqnorm_final_kernel<<<1, kThreads, 0, stream>>>(partial.data_ptr<float>(), grid, out.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void adamw_step_cuda(const at::Tensor& param, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq,
                     const std::optional<at::Tensor>& master, const at::Tensor& grad, const at::Tensor& segments,
                     const at::Tensor& hyper, const at::Tensor& steps, const std::optional<at::Tensor>& grad_sqnorm,
                     double max_grad_norm, bool skip_nonfinite, const std::optional<at::Tensor>& anchor) {
  const char* op = "ftengine::adamw_step";
  const int64_t groups =
      check_adamw_args(op, param, exp_avg, exp_avg_sq, master, grad, segments, hyper, steps, grad_sqnorm, anchor);
  const bool has_anchor = anchor.has_value() && anchor->defined();
  const float* sq = sqnorm_ptr(op, grad_sqnorm, max_grad_norm, skip_nonfinite);
  if (groups == 0) return;
  c10::cuda::CUDAGuard guard(param.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  auto coeffs = at::empty({groups * static_cast<int64_t>(sizeof(AdamWCoeffs))}, param.options().dtype(at::kByte));
  auto* c = reinterpret_cast<AdamWCoeffs*>(coeffs.data_ptr());
  prologue_kernel<AdamWCoeffs><<<1, kThreads, 0, stream>>>(
      segments.data_ptr<int64_t>(), hyper.data_ptr<double>(), kAdamWCols + (has_anchor ? 1 : 0), has_anchor,
      steps.data_ptr<int64_t>(), groups, sq, max_grad_norm, skip_nonfinite, c);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (param.numel() == 0) return;
  const at::Tensor& weights = master.has_value() && master->defined() ? *master : param;
  const bool vec_ok = aligned32(weights) && aligned32(param) && aligned32(grad) && aligned32(exp_avg) &&
                      aligned32(exp_avg_sq) && (!has_anchor || aligned32(*anchor));
  dispatch_float_kind(param.scalar_type(), [&](auto gtag) {
    using G = std::remove_pointer_t<decltype(gtag)>;
    dispatch_float_kind(exp_avg.scalar_type(), [&](auto stag) {
      using S = std::remove_pointer_t<decltype(stag)>;
      if constexpr (!std::is_same_v<S, fp16_t>) {
        constexpr bool kLow = !std::is_same_v<G, float>;
        dispatch_anchor(anchor, [&](auto a, auto anchored) {
          using A = std::remove_const_t<std::remove_pointer_t<decltype(a)>>;
          auto kernel = adamw_kernel<G, S, kLow, A, decltype(anchored)::value>;
          kernel<<<grid_for(kernel, param.numel()), kThreads, 0, stream>>>(
              ptr<float>(weights), ptr<G>(param), ptr<G>(grad), ptr<S>(exp_avg), ptr<S>(exp_avg_sq), a,
              segments.data_ptr<int64_t>(), groups, param.numel(), vec_ok, c);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      }
    });
  });
}

void sgd_step_cuda(const at::Tensor& param, const std::optional<at::Tensor>& momentum_buffer,
                   const std::optional<at::Tensor>& master, const at::Tensor& grad, const at::Tensor& segments,
                   const at::Tensor& hyper, const at::Tensor& steps, const std::optional<at::Tensor>& grad_sqnorm,
                   double max_grad_norm, bool skip_nonfinite, const std::optional<at::Tensor>& anchor) {
  const char* op = "ftengine::sgd_step";
  const int64_t groups =
      check_sgd_args(op, param, momentum_buffer, master, grad, segments, hyper, steps, grad_sqnorm, anchor);
  const bool has_anchor = anchor.has_value() && anchor->defined();
  const bool has_buf = momentum_buffer.has_value() && momentum_buffer->defined();
  const float* sq = sqnorm_ptr(op, grad_sqnorm, max_grad_norm, skip_nonfinite);
  if (groups == 0) return;
  c10::cuda::CUDAGuard guard(param.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  auto coeffs = at::empty({groups * static_cast<int64_t>(sizeof(SgdCoeffs))}, param.options().dtype(at::kByte));
  auto* c = reinterpret_cast<SgdCoeffs*>(coeffs.data_ptr());
  prologue_kernel<SgdCoeffs><<<1, kThreads, 0, stream>>>(
      segments.data_ptr<int64_t>(), hyper.data_ptr<double>(), kSgdCols + (has_anchor ? 1 : 0), has_anchor,
      steps.data_ptr<int64_t>(), groups, sq, max_grad_norm, skip_nonfinite, c);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (param.numel() == 0) return;
  const at::Tensor& weights = master.has_value() && master->defined() ? *master : param;
  const bool vec_ok = aligned32(weights) && aligned32(param) && aligned32(grad) &&
                      (!has_buf || aligned32(*momentum_buffer)) && (!has_anchor || aligned32(*anchor));
  dispatch_float_kind(param.scalar_type(), [&](auto gtag) {
    using G = std::remove_pointer_t<decltype(gtag)>;
    dispatch_float_kind(has_buf ? momentum_buffer->scalar_type() : at::kFloat, [&](auto btag) {
      using S = std::remove_pointer_t<decltype(btag)>;
      if constexpr (!std::is_same_v<S, fp16_t>) {
        constexpr bool kLow = !std::is_same_v<G, float>;
        dispatch_anchor(anchor, [&](auto a, auto anchored) {
          using A = std::remove_const_t<std::remove_pointer_t<decltype(a)>>;
          constexpr bool kAnchor = decltype(anchored)::value;
          auto launch = [&](auto kernel, S* buf) {
            kernel<<<grid_for(kernel, param.numel()), kThreads, 0, stream>>>(
                ptr<float>(weights), ptr<G>(param), ptr<G>(grad), buf, a, segments.data_ptr<int64_t>(), groups,
                param.numel(), vec_ok, c);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          };
          if (has_buf)
            launch(sgd_kernel<G, S, kLow, true, A, kAnchor>, ptr<S>(*momentum_buffer));
          else
            launch(sgd_kernel<G, S, kLow, false, A, kAnchor>, nullptr);
        });
      }
    });
  });
}

TORCH_LIBRARY_IMPL(ftengine, CUDA, m) {
  m.impl("flat_grad_sqnorm", &flat_grad_sqnorm_cuda);
  m.impl("adamw_step", &adamw_step_cuda);
  m.impl("sgd_step", &sgd_step_cuda);
}

}  // namespace ftengine
