// ftengine::gather_ragged on CPU: assemble a padded batch from ragged cached activations in one pass.
// Reference (the executable specification): ftengine/kernels/reference.py::gather_ragged.
//
//   data    (R, D)  rows of every example's real tokens, back to back (fp32 / bf16 / fp16 / fp64)
//   offsets (N,)    int64, first row of example i
//   lengths (N,)    int64, real tokens of example i
//   index   (B,)    int64, example ids of the batch
//   -> out  (B, T, D) in `dtype`: out[b, t] = data[offsets[index[b]] + t] for t < min(lengths[index[b]], T), else 0
//      mask (B, T)    int64: 1 at real tokens, 0 at padding          (T = max_len)
//
// One output row (b, t) is one task of at::parallel_for: read D source elements, convert, write D elements.
// `data` may be a memory-mapped file: it is never copied or made contiguous here (rows need unit stride only).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/TypeCast.h>
#include <torch/library.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "ftengine/gather_args.h"

namespace ftengine {
namespace {

template <typename src_t, typename dst_t>
void gather_rows(const src_t* data, int64_t row_stride, const std::vector<int64_t>& starts,
                 const std::vector<int64_t>& lens, int64_t max_len, int64_t D, dst_t* out, int64_t* mask) {
  const int64_t rows = static_cast<int64_t>(starts.size()) * max_len;
  // ~32 KiB of output per task keeps scheduling overhead small for narrow rows.
  const int64_t grain = std::max<int64_t>(1, (32 * 1024) / std::max<int64_t>(1, D * int64_t(sizeof(dst_t))));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / max_len;
      const int64_t t = r - b * max_len;
      dst_t* o = out + r * D;
      const bool real = t < lens[b];
      mask[r] = real ? 1 : 0;
      if (!real) {
        std::memset(static_cast<void*>(o), 0, sizeof(dst_t) * D);  // +0.0 is all-zero bits for every float type
        continue;
      }
      const src_t* s = data + (starts[b] + t) * row_stride;
      if constexpr (std::is_same_v<src_t, dst_t>) {
        std::memcpy(o, s, sizeof(dst_t) * D);
      } else {
        for (int64_t d = 0; d < D; ++d) o[d] = c10::convert<dst_t>(s[d]);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gather_ragged_cpu(const at::Tensor& data, const at::Tensor& offsets,
                                                     const at::Tensor& lengths, const at::Tensor& index,
                                                     int64_t max_len, at::ScalarType dtype) {
  check_gather_args(data, offsets, lengths, index, max_len, dtype);

  const int64_t B = index.size(0), D = data.size(1), N = offsets.size(0), R = data.size(0);
  // A pinned cache (host tier on a GPU run) yields pinned batches: their copy to the device is asynchronous.
  const bool pinned = data.is_pinned();
  auto out = at::empty({B, max_len, D}, data.options().dtype(dtype).pinned_memory(pinned));
  auto mask = at::empty({B, max_len}, data.options().dtype(at::kLong).pinned_memory(pinned));
  if (B == 0 || max_len == 0) return {out, mask};

  // Resolve and bounds-check the B examples once (serial: B is a batch, tiny next to B*T*D).
  auto idx = index.contiguous();
  auto off = offsets.contiguous();
  auto len = lengths.contiguous();
  const int64_t* pi = idx.data_ptr<int64_t>();
  const int64_t* po = off.data_ptr<int64_t>();
  const int64_t* pl = len.data_ptr<int64_t>();
  std::vector<int64_t> starts(B), lens(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = pi[b];
    TORCH_CHECK(i >= 0 && i < N, "ftengine::gather_ragged: index[", b, "] = ", i, " is out of range for ", N,
                " examples");
    const int64_t n = std::min(pl[i], max_len);
    TORCH_CHECK(pl[i] >= 0 && po[i] >= 0 && (n == 0 || po[i] + n <= R), "ftengine::gather_ragged: example ", i,
                " (rows ", po[i], " + ", pl[i], ") lies outside data's ", R, " rows");
    starts[b] = po[i];
    lens[b] = n;
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, data.scalar_type(), "gather_ragged_src", [&] {
    using src_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_ragged_dst", [&] {
      gather_rows<src_t, scalar_t>(data.const_data_ptr<src_t>(), data.stride(0), starts, lens, max_len, D,
                                   out.mutable_data_ptr<scalar_t>(), mask.mutable_data_ptr<int64_t>());
    });
  });
  return {out, mask};
}

TORCH_LIBRARY_IMPL(ftengine, CPU, m) { m.impl("gather_ragged", &gather_ragged_cpu); }

}  // namespace ftengine
