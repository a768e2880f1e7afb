// CPU kernels of the flat per-group optimizer: ftengine::flat_grad_sqnorm, ftengine::adamw_step, ftengine::sgd_step.
// Reference (the executable specification): ftengine/kernels/reference.py. Math: ftengine/optim_math.h.
// "Group" below is one row of the tables (FlatOptimizer: one parameter, see optim_math.h).
//
// The trainable groups of one flat buffer are concatenated into a virtual index space, cut into fixed blocks of
// kBlock elements, and the blocks are shared out by ONE at::parallel_for region per op call (frozen groups are
// not in the index space: their bytes are never touched). Clipping / the non-finite check need the global grad
// norm first, which is a separate, earlier region (flat_grad_sqnorm): two passes over the grads in that case.
// The element loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time. One core is
// bound by its own memory bandwidth here (measured: in-cache the loop runs ~2.5x faster than from DRAM; software
// prefetching and non-temporal stores were tried and made it slower), so the loops stay plain and vectorizable.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "ftengine/flat_args.h"
#include "ftengine/optim_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FT_CLONES
#endif

namespace ftengine {
namespace {

// Fixed block size, so the norm's summation order (and so its bits) does not depend on the thread count.
constexpr int64_t kBlock = 1 << 15;

struct Piece {
  int64_t offset, length, vbegin, group;
};

// Trainable non-empty segments in order, each with its start in the concatenation of trainable elements.
std::vector<Piece> trainable_pieces(const char* op, const at::Tensor& segments, int64_t numel) {
  const int64_t* s = segments.data_ptr<int64_t>();
  std::vector<Piece> pieces;
  int64_t v = 0;
  for (int64_t g = 0; g < segments.size(0); ++g) {
    const int64_t off = s[g * kSegCols], len = s[g * kSegCols + 1], trainable = s[g * kSegCols + 2];
    TORCH_CHECK(off >= 0 && len >= 0 && off + len <= numel, op, ": segment ", g, " [", off, ", ", off + len,
                ") lies outside the flat buffer of ", numel, " elements; rebuild the segment table");
    if (trainable != 0 && len > 0) {
      pieces.push_back({off, len, v, g});
      v += len;
    }
  }
  return pieces;
}

// fn(block, piece, lo, hi) for every piece slice [lo, hi) of every block. ONE parallel region; threads claim blocks
// from a shared counter (dynamic, not a static split: on a busy machine a descheduled thread does not hold up the
// step while the others idle).
template <typename Fn>
void parallel_over_pieces(const std::vector<Piece>& pieces, const Fn& fn) {
  if (pieces.empty()) return;
  const int64_t total = pieces.back().vbegin + pieces.back().length;
  const int64_t blocks = (total + kBlock - 1) / kBlock;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), blocks);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(1, std::memory_order_relaxed); b < blocks;
         b = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t vlo = b * kBlock, vhi = std::min(total, vlo + kBlock);
      auto it = std::upper_bound(pieces.begin(), pieces.end(), vlo,
                                 [](int64_t v, const Piece& p) { return v < p.vbegin; }) - 1;
      for (int64_t v = vlo; v < vhi; ++it) {
        const int64_t lo = v - it->vbegin, hi = std::min(it->length, vhi - it->vbegin);
        fn(b, *it, lo, hi);
        v = it->vbegin + hi;
      }
    }
  });
}

// ---- element loops (one overload per storage combination; `std::nullptr_t` = that array is absent) -------------

template <typename G>
inline __attribute__((always_inline)) double sqnorm_loop(const G* __restrict g, int64_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    const double x = to_float(g[i]);
    acc += x * x;
  }
  return acc;
}

// A: `std::nullptr_t` (no L2-SP) or `const float*` / `const bf16_t*` (the anchor slice).
template <typename P, typename G, typename S, typename A>
inline __attribute__((always_inline)) void adamw_loop(float* __restrict w, P low, const G* __restrict g,
                                                      S* __restrict m, S* __restrict v, A anchor, int64_t n,
                                                      AdamWCoeffs c) {
  constexpr bool kAnchor = !std::is_same_v<A, std::nullptr_t>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float wi = w[i], mi = to_float(m[i]), vi = to_float(v[i]), ai = 0.0f;
    if constexpr (kAnchor) ai = to_float(anchor[i]);
    adamw_element<kAnchor>(wi, to_float(g[i]), mi, vi, c, ai);
    w[i] = wi;
    m[i] = from_float<S>(mi);
    v[i] = from_float<S>(vi);
    if constexpr (!std::is_same_v<P, std::nullptr_t>) low[i] = from_float<std::remove_pointer_t<P>>(wi);
  }
}

template <typename P, typename G, typename B, typename A>
inline __attribute__((always_inline)) void sgd_loop(float* __restrict w, P low, const G* __restrict g, B buf,
                                                    A anchor, int64_t n, SgdCoeffs c) {
  constexpr bool kBuf = !std::is_same_v<B, std::nullptr_t>;
  constexpr bool kAnchor = !std::is_same_v<A, std::nullptr_t>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float wi = w[i], bi = 0.0f, ai = 0.0f;
    if constexpr (kBuf) bi = to_float(buf[i]);
    if constexpr (kAnchor) ai = to_float(anchor[i]);
    sgd_element<kAnchor>(wi, to_float(g[i]), bi, kBuf, c, ai);
    w[i] = wi;
    if constexpr (kBuf) buf[i] = from_float<std::remove_pointer_t<B>>(bi);
    if constexpr (!std::is_same_v<P, std::nullptr_t>) low[i] = from_float<std::remove_pointer_t<P>>(wi);
  }
}

#define FT_SQNORM(G) \
  FT_CLONES double sqnorm_kernel(const G* g, int64_t n) { return sqnorm_loop(g, n); }
FT_SQNORM(float)
FT_SQNORM(bf16_t)
FT_SQNORM(fp16_t)

#define FT_ADAMW(P, G, S, A)                                                                                   \
  FT_CLONES void adamw_kernel(float* w, P low, const G* g, S* m, S* v, A a, int64_t n, const AdamWCoeffs& c) {  \
    adamw_loop(w, low, g, m, v, a, n, c);                                                                     \
  }
#define FT_ADAMW_ALL_ANCHORS(P, G, S) \
  FT_ADAMW(P, G, S, std::nullptr_t) FT_ADAMW(P, G, S, const float*) FT_ADAMW(P, G, S, const bf16_t*)
FT_ADAMW_ALL_ANCHORS(std::nullptr_t, float, float)
FT_ADAMW_ALL_ANCHORS(std::nullptr_t, float, bf16_t)
FT_ADAMW_ALL_ANCHORS(bf16_t*, bf16_t, float)
FT_ADAMW_ALL_ANCHORS(bf16_t*, bf16_t, bf16_t)
FT_ADAMW_ALL_ANCHORS(fp16_t*, fp16_t, float)
FT_ADAMW_ALL_ANCHORS(fp16_t*, fp16_t, bf16_t)

#define FT_SGD(P, G, B, A)                                                                                \
  FT_CLONES void sgd_kernel(float* w, P low, const G* g, B buf, A a, int64_t n, const SgdCoeffs& c) {    \
    sgd_loop(w, low, g, buf, a, n, c);                                                                \
  }
#define FT_SGD_ALL_ANCHORS(P, G, B) \
  FT_SGD(P, G, B, std::nullptr_t) FT_SGD(P, G, B, const float*) FT_SGD(P, G, B, const bf16_t*)
#define FT_SGD_ALL_BUFS(P, G) \
  FT_SGD_ALL_ANCHORS(P, G, std::nullptr_t) FT_SGD_ALL_ANCHORS(P, G, float*) FT_SGD_ALL_ANCHORS(P, G, bf16_t*)
FT_SGD_ALL_BUFS(std::nullptr_t, float)
FT_SGD_ALL_BUFS(bf16_t*, bf16_t)
FT_SGD_ALL_BUFS(fp16_t*, fp16_t)

// Global grad scale and whether to step at all; increments the step count of every trainable group if so.
bool begin_step(const char* op, const at::Tensor& segments, const at::Tensor& steps,
                const std::optional<at::Tensor>& grad_sqnorm, double max_grad_norm, bool skip_nonfinite,
                float* scale) {
  const bool has_norm = require_sqnorm(op, grad_sqnorm, max_grad_norm, skip_nonfinite);
  *scale = 1.0f;
  if (has_norm && !grad_scale_from_sqnorm(grad_sqnorm->item<float>(), max_grad_norm, skip_nonfinite, scale))
    return false;
  const int64_t* s = segments.data_ptr<int64_t>();
  int64_t* t = steps.data_ptr<int64_t>();
  for (int64_t g = 0; g < segments.size(0); ++g) t[g] += s[g * kSegCols + 2] != 0 ? 1 : 0;
  return true;
}

// Calls fn(anchor + offset) for an anchored row (alpha != 0) with the anchor's storage type, else fn(nullptr): a
// row without L2-SP runs the plain loop and never reads its (possibly uninitialised) anchor slice.
template <typename Fn>
void with_anchor(const std::optional<at::Tensor>& anchor, bool anchored, int64_t offset, const Fn& fn) {
  if (!anchored) return fn(nullptr);
  if (anchor->scalar_type() == at::kBFloat16) return fn(static_cast<const bf16_t*>(ptr<bf16_t>(*anchor) + offset));
  fn(static_cast<const float*>(ptr<float>(*anchor) + offset));
}

}  // namespace

at::Tensor flat_grad_sqnorm_cpu(const at::Tensor& grad, const at::Tensor& segments) {
  const char* op = "ftengine::flat_grad_sqnorm";
  check_sqnorm_inputs(op, grad, segments);
  const auto pieces = trainable_pieces(op, segments, grad.numel());
  const int64_t total = pieces.empty() ? 0 : pieces.back().vbegin + pieces.back().length;
  std::vector<double> partial((total + kBlock - 1) / kBlock, 0.0);
  dispatch_float_kind(grad.scalar_type(), [&](auto tag) {
    using G = std::remove_pointer_t<decltype(tag)>;
    const G* g = ptr<G>(grad);
    parallel_over_pieces(pieces, [&](int64_t b, const Piece& p, int64_t lo, int64_t hi) {
      partial[b] += sqnorm_kernel(g + p.offset + lo, hi - lo);
    });
  });
  double sum = 0.0;
  for (double x : partial) sum += x;  // in block order: deterministic
  return at::scalar_tensor(static_cast<float>(sum), grad.options().dtype(at::kFloat));
}

void adamw_step_cpu(const at::Tensor& param, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq,
                    const std::optional<at::Tensor>& master, const at::Tensor& grad, const at::Tensor& segments,
                    const at::Tensor& hyper, const at::Tensor& steps, const std::optional<at::Tensor>& grad_sqnorm,
                    double max_grad_norm, bool skip_nonfinite, const std::optional<at::Tensor>& anchor) {
  const char* op = "ftengine::adamw_step";
  check_adamw_args(op, param, exp_avg, exp_avg_sq, master, grad, segments, hyper, steps, grad_sqnorm, anchor);
  const bool has_anchor = anchor.has_value() && anchor->defined();
  const int64_t cols = kAdamWCols + (has_anchor ? 1 : 0);
  const auto pieces = trainable_pieces(op, segments, param.numel());
  float scale;
  if (!begin_step(op, segments, steps, grad_sqnorm, max_grad_norm, skip_nonfinite, &scale)) return;
  std::vector<AdamWCoeffs> coeffs(segments.size(0));
  for (const Piece& p : pieces)
    coeffs[p.group] = adamw_coeffs(hyper.data_ptr<double>() + p.group * cols, steps.data_ptr<int64_t>()[p.group],
                                   scale, true, has_anchor);
  float* w = ptr<float>(master.has_value() && master->defined() ? *master : param);
  dispatch_float_kind(param.scalar_type(), [&](auto gtag) {
    using G = std::remove_pointer_t<decltype(gtag)>;
    dispatch_float_kind(exp_avg.scalar_type(), [&](auto stag) {
      using S = std::remove_pointer_t<decltype(stag)>;
      if constexpr (!std::is_same_v<S, fp16_t>) {
        const G* g = ptr<G>(grad);
        S* m = ptr<S>(exp_avg);
        S* v = ptr<S>(exp_avg_sq);
        parallel_over_pieces(pieces, [&](int64_t, const Piece& p, int64_t lo, int64_t hi) {
          const int64_t o = p.offset + lo;
          const AdamWCoeffs& c = coeffs[p.group];
          with_anchor(anchor, c.anchored, o, [&](auto a) {
            if constexpr (std::is_same_v<G, float>)
              adamw_kernel(w + o, nullptr, g + o, m + o, v + o, a, hi - lo, c);
            else
              adamw_kernel(w + o, ptr<G>(param) + o, g + o, m + o, v + o, a, hi - lo, c);
          });
        });
      }
    });
  });
}

void sgd_step_cpu(const at::Tensor& param, const std::optional<at::Tensor>& momentum_buffer,
                  const std::optional<at::Tensor>& master, const at::Tensor& grad, const at::Tensor& segments,
                  const at::Tensor& hyper, const at::Tensor& steps, const std::optional<at::Tensor>& grad_sqnorm,
                  double max_grad_norm, bool skip_nonfinite, const std::optional<at::Tensor>& anchor) {
  const char* op = "ftengine::sgd_step";
  check_sgd_args(op, param, momentum_buffer, master, grad, segments, hyper, steps, grad_sqnorm, anchor);
  const bool has_buf = momentum_buffer.has_value() && momentum_buffer->defined();
  const bool has_anchor = anchor.has_value() && anchor->defined();
  const int64_t cols = kSgdCols + (has_anchor ? 1 : 0);
  const auto pieces = trainable_pieces(op, segments, param.numel());
  float scale;
  if (!begin_step(op, segments, steps, grad_sqnorm, max_grad_norm, skip_nonfinite, &scale)) return;
  std::vector<SgdCoeffs> coeffs(segments.size(0));
  for (const Piece& p : pieces)
    coeffs[p.group] = sgd_coeffs(hyper.data_ptr<double>() + p.group * cols, steps.data_ptr<int64_t>()[p.group],
                                 scale, true, has_anchor);
  float* w = ptr<float>(master.has_value() && master->defined() ? *master : param);
  const auto buf_dtype = has_buf ? momentum_buffer->scalar_type() : at::kFloat;
  dispatch_float_kind(param.scalar_type(), [&](auto gtag) {
    using G = std::remove_pointer_t<decltype(gtag)>;
    dispatch_float_kind(buf_dtype, [&](auto btag) {
      using S = std::remove_pointer_t<decltype(btag)>;
      if constexpr (!std::is_same_v<S, fp16_t>) {
        const G* g = ptr<G>(grad);
        parallel_over_pieces(pieces, [&](int64_t, const Piece& p, int64_t lo, int64_t hi) {
          const int64_t o = p.offset + lo;
          const SgdCoeffs& c = coeffs[p.group];
          auto run = [&](auto low) {
            with_anchor(anchor, c.anchored, o, [&](auto a) {
              if (has_buf)
                sgd_kernel(w + o, low, g + o, ptr<S>(*momentum_buffer) + o, a, hi - lo, c);
              else
                sgd_kernel(w + o, low, g + o, nullptr, a, hi - lo, c);
            });
          };
          if constexpr (std::is_same_v<G, float>)
            run(nullptr);
          else
            run(ptr<G>(param) + o);
        });
      }
    });
  });
}

TORCH_LIBRARY_IMPL(ftengine, CPU, m) {
  m.impl("flat_grad_sqnorm", &flat_grad_sqnorm_cpu);
  m.impl("adamw_step", &adamw_step_cpu);
  m.impl("sgd_step", &sgd_step_cpu);
}

}  // namespace ftengine
