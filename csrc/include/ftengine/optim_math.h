// Update math of the flat per-group optimizer, shared by the CPU (C++) and CUDA kernels.
//
// The tables have one row per segment of the flat buffer, each with its own hyper-parameters and step count t; the
// kernels never look past a row. FlatOptimizer makes every parameter a segment, flagged trainable only when its
// group trains AND it has a gradient this step: torch.optim skips a parameter whose .grad is None and keeps a step
// count per parameter, and per-parameter rows match both in the same single launch.
//
// Semantics (reference: ftengine/kernels/reference.py, which mirrors torch.optim.AdamW / torch.optim.SGD):
//   grad scale  s = min(1, max_norm / (||g||_2 + 1e-6))      global norm over trainable rows (torch clip_grad_norm_)
//   AdamW       w *= 1 - lr*wd;  m = lerp(m, s*g, 1-b1);  v = b2*v + (1-b2)*(s*g)^2
//               w += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)      t = the row's own step count
//   SGD         d = s*g + wd*w;  buf = (t == 1 ? d : mu*buf + d);  d = nesterov ? d + mu*buf : buf;  w += -lr*d
// L2-SP (optional flat `anchor` operand = starting weights, fp32 or bf16; hyper gains a last column alpha; a row
// with alpha == 0 never reads its anchor and runs the plain loop above):
//   AdamW       drift = w - anchor (before decay);  w *= 1 - lr*wd;  w += -(lr*alpha) * drift;  then as above
//   SGD         d = s*g + wd*w + alpha*(w - anchor);  then as above
// All math is fp32 in registers; per-row scalars are formed in double (as torch forms them from Python floats).
//
// Bytes moved per parameter per step (read + write; rows not trainable move nothing):
//   AdamW fp32 param, fp32 moments ............ read w,g,m,v 16 + write w,m,v 12 = 28 B
//   AdamW fp32 param, bf16 moments ............ read 4+4+2+2  12 + write 4+2+2    8 = 20 B
//   AdamW bf16 param + fp32 master, fp32 mom .. read w,g,m,v 4+2+4+4 14 + write w,p,m,v 4+2+4+4 14 = 28 B
//   AdamW bf16 param + fp32 master, bf16 mom .. read 4+2+2+2 10 + write 4+2+2+2 10 = 20 B
//   SGD momentum fp32 ......................... read w,g,buf 12 + write w,buf 8 = 20 B (bf16 buffer: 16 B)
//   global grad norm (clipping / non-finite skip) adds one more read of the grads: +4 B (fp32) / +2 B (bf16)
//   L2-SP adds one read of the anchor on anchored rows: +4 B (fp32 anchor) / +2 B (bf16 anchor)
// (ftengine.kernels.flat.bytes_per_param computes the same table for the benchmarks.)
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <c10/util/Half.h>  // host-side fp16 <-> fp32 bit conversions

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define FT_HD __host__ __device__ __forceinline__
#else
#define FT_HD inline __attribute__((always_inline))
#endif

namespace ftengine {

// Column layouts of the tables (kept in sync with ftengine/kernels/flat.py).
constexpr int kSegCols = 3;    // segments int64 [G, 3]: offset, length, trainable (0/1: update this row)
constexpr int kAdamWCols = 5;  // hyper float64 [G, 5]: lr, weight_decay, beta1, beta2, eps
constexpr int kSgdCols = 4;    // hyper float64 [G, 4]: lr, weight_decay, momentum, nesterov (0/1)
// With an anchor (L2-SP) both hyper tables have one more, last column: l2sp (alpha).

// Storage tags for 16-bit floats (raw bits; conversions below work on host and device).
struct alignas(2) bf16_t { uint16_t bits; };
struct alignas(2) fp16_t { uint16_t bits; };

FT_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

FT_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

FT_HD float to_float(float x) { return x; }
FT_HD float to_float(bf16_t x) { return bits_to_float(static_cast<uint32_t>(x.bits) << 16); }
FT_HD float to_float(fp16_t x) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(x.bits));
#else
  return c10::detail::fp16_ieee_to_fp32_value(x.bits);
#endif
}

template <typename T>
FT_HD T from_float(float x);
template <>
FT_HD float from_float<float>(float x) { return x; }
template <>
FT_HD bf16_t from_float<bf16_t>(float x) {
  // Round to nearest even, NaN stays a quiet NaN (same bits as c10::BFloat16).
  uint32_t u = float_to_bits(x);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return bf16_t{static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? 0x7fc0u : rounded)};
}
template <>
FT_HD fp16_t from_float<fp16_t>(float x) {
#if defined(__CUDA_ARCH__)
  return fp16_t{__half_as_ushort(__float2half_rn(x))};
#else
  return fp16_t{c10::detail::fp16_ieee_from_fp32_value(x)};
#endif
}

FT_HD bool is_finite(float x) { return (float_to_bits(x) & 0x7f800000u) != 0x7f800000u; }

// Gradient scale from the global squared norm: false = skip the step (non-finite norm and skipping asked for).
FT_HD bool grad_scale_from_sqnorm(float sqnorm, double max_norm, bool skip_nonfinite, float* scale) {
  float norm = sqrtf(sqnorm);
  if (skip_nonfinite && !is_finite(norm)) return false;
  *scale = 1.0f;
  if (max_norm > 0.0) {  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1
    float coef = static_cast<float>(max_norm) / (norm + 1e-6f);
    *scale = coef < 1.0f ? coef : 1.0f;
  }
  return true;
}

struct AdamWCoeffs {
  float wd_factor;      // 1 - lr * wd (decoupled weight decay)
  float lerp_weight;    // 1 - beta1
  float beta2, one_minus_beta2;
  float neg_step_size;  // -lr / (1 - beta1^t)
  float inv_bc2_sqrt;   // 1 / sqrt(1 - beta2^t): a multiply instead of torch's divide (<= 1 ulp apart, one
                        // fewer division per element: divisions bound the CPU kernel's in-cache speed)
  float eps;
  float grad_scale;     // clip coefficient
  float neg_l2sp;       // -lr * alpha (decoupled L2-SP decay toward the anchor)
  int active;           // row trainable and step not skipped
  int anchored;         // alpha != 0: read the anchor
};

// `has_anchor`: the hyper row has the l2sp column (an anchor operand was passed).
FT_HD AdamWCoeffs adamw_coeffs(const double* h, int64_t step, float grad_scale, bool active, bool has_anchor) {
  const double lr = h[0], wd = h[1], beta1 = h[2], beta2 = h[3], eps = h[4];
  const double alpha = has_anchor ? h[kAdamWCols] : 0.0;
  const double t = static_cast<double>(step > 0 ? step : 1);
  AdamWCoeffs c;
  c.wd_factor = static_cast<float>(1.0 - lr * wd);
  c.lerp_weight = static_cast<float>(1.0 - beta1);
  c.beta2 = static_cast<float>(beta2);
  c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  c.neg_step_size = static_cast<float>(-(lr / (1.0 - pow(beta1, t))));
  c.inv_bc2_sqrt = static_cast<float>(1.0 / sqrt(1.0 - pow(beta2, t)));
  c.eps = static_cast<float>(eps);
  c.grad_scale = grad_scale;
  c.neg_l2sp = static_cast<float>(-(lr * alpha));
  c.active = active ? 1 : 0;
  c.anchored = alpha != 0.0;
  return c;
}

// One element of AdamW in torch.optim.AdamW's operation order (single-tensor path; see inv_bc2_sqrt).
// kAnchor: also decay toward `a` (L2-SP); without it the anchor argument is unused and the math is unchanged.
template <bool kAnchor = false>
FT_HD void adamw_element(float& w, float g, float& m, float& v, const AdamWCoeffs& c, float a = 0.0f) {
  g *= c.grad_scale;
  const float drift = w - a;
  w *= c.wd_factor;
  if constexpr (kAnchor) w = w + c.neg_l2sp * drift;
  // torch lerp: weight < 0.5 ? start + weight * (end - start) : end - (end - start) * (1 - weight)
  m = c.lerp_weight < 0.5f ? m + c.lerp_weight * (g - m) : g - (g - m) * (1.0f - c.lerp_weight);
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  const float denom = sqrtf(v) * c.inv_bc2_sqrt + c.eps;
  w = w + (c.neg_step_size * m) / denom;
}

struct SgdCoeffs {
  float neg_lr, weight_decay, momentum, grad_scale, l2sp;
  int nesterov, first_step, active, anchored;
};

FT_HD SgdCoeffs sgd_coeffs(const double* h, int64_t step, float grad_scale, bool active, bool has_anchor) {
  SgdCoeffs c;
  const double alpha = has_anchor ? h[kSgdCols] : 0.0;
  c.l2sp = static_cast<float>(alpha);
  c.anchored = alpha != 0.0;
  c.neg_lr = static_cast<float>(-h[0]);
  c.weight_decay = static_cast<float>(h[1]);
  c.momentum = static_cast<float>(h[2]);
  c.nesterov = h[3] != 0.0;
  c.first_step = step <= 1;
  c.grad_scale = grad_scale;
  c.active = active ? 1 : 0;
  return c;
}

// One element of SGD in torch.optim.SGD's order (coupled L2 weight decay, dampening 0); has_buf = momentum on.
// kAnchor: also the L2-SP term alpha * (w - a), coupled like the weight decay.
template <bool kAnchor = false>
FT_HD void sgd_element(float& w, float g, float& buf, bool has_buf, const SgdCoeffs& c, float a = 0.0f) {
  float d = g * c.grad_scale;
  if (c.weight_decay != 0.0f) d = d + c.weight_decay * w;
  if constexpr (kAnchor) d = d + c.l2sp * (w - a);
  if (has_buf && c.momentum != 0.0f) {
    buf = c.first_step ? d : buf * c.momentum + d;
    d = c.nesterov ? d + c.momentum * buf : buf;
  }
  w = w + c.neg_lr * d;
}

}  // namespace ftengine
