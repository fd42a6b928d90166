// dist/sparse_rows.hpp - packing the K/V rows a branch keeps in a shard into a
// dense buffer for exchange, and unpacking them on the other side.
//
// Only the sparsified rows travel: for every (batch, head that runs the
// branch, window of the shard), the positions the head keeps there - about
// w/r per segment and head offset, independent of N. Sender and receiver
// derive the same layout from pattern.hpp (the one sparsity rule), so no
// counts are exchanged. Slots have a fixed size (max_rows); the at most one
// row by which ragged offsets differ is sent as zeros.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <vector>

#include "dilated/details/kernel_params.hpp"
#include "dilated/pattern.hpp"
#include "dilated/tensor_ref.hpp"
#include "dist/shard_layout.hpp"

namespace dilated {
namespace dist {

struct SparseRows {
  PatternParams pattern;
  int branch = 0;
  std::int64_t batch = 0, head_dim = 0;
  std::int64_t head_first = 0, head_count = 0;  // heads that run the branch (contiguous)
  int num_windows = 0;
  ShardWindow window[2];
  std::int64_t max_rows = 0;  // rows per (batch, head, window) slot

  std::int64_t rows() const { return batch * head_count * num_windows * max_rows; }
  std::int64_t elements() const { return rows() * head_dim; }

  // For packed row r: the shard row it comes from, or -1 for slot padding;
  // *h receives the head and *b the batch.
  KOKKOS_INLINE_FUNCTION std::int64_t shard_row(std::int64_t r, std::int64_t* b,
                                                std::int64_t* h) const {
    const std::int64_t j = r % max_rows;
    r /= max_rows;
    const ShardWindow& w = window[r % num_windows];
    r /= num_windows;
    *h = head_first + r % head_count;
    *b = r / head_count;
    const std::int64_t o = pattern.offset(*h, branch);
    const std::int64_t s = w.begin / pattern.segment_length[branch];  // one segment per window
    std::int64_t j0, j1;
    pattern.window_range(branch, s, o, w.begin, w.begin + w.len, &j0, &j1);
    if (j >= j1 - j0) return -1;
    return w.row + pattern.position(branch, s, o, j0 + j) - w.begin;
  }
};

// The packing layout of branch `br` for a shard made of `windows` (whose
// positions must each lie inside one segment of the branch, which the size
// rules guarantee for cross-rank branches).
inline SparseRows make_sparse_rows(const PatternParams& pattern, int br, std::int64_t batch,
                                   std::int64_t head_dim,
                                   const std::vector<ShardWindow>& windows) {
  SparseRows s;
  s.pattern = pattern;
  s.branch = br;
  s.batch = batch;
  s.head_dim = head_dim;
  s.head_first = -1;
  for (std::int64_t h = 0; h < pattern.heads; ++h)
    if (pattern.active(h, br)) {
      if (s.head_first < 0) s.head_first = h;
      ++s.head_count;
    }
  if (s.head_first < 0) s.head_first = 0;
  s.num_windows = static_cast<int>(windows.size());
  for (int i = 0; i < s.num_windows; ++i) {
    s.window[i] = windows[static_cast<std::size_t>(i)];
    const std::int64_t m = pattern.max_kept_in_window(br, s.window[i].len);
    s.max_rows = m > s.max_rows ? m : s.max_rows;
  }
  return s;
}

// buf[r, :] = tensor[b, shard_row(r), h, :] (zeros for padding rows).
template <class ExecSpace, class T>
void pack_rows(const ExecSpace& space, const SparseRows& s, const TensorRef<const T, 4>& t,
               T* buf) {
  const std::int64_t d = s.head_dim;
  Kokkos::parallel_for(
      "dilated::dist::pack_rows",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, s.rows()),
      KOKKOS_LAMBDA(const std::int64_t r) {
        std::int64_t b, h;
        const std::int64_t row = s.shard_row(r, &b, &h);
        T* dst = buf + r * d;
        if (row < 0) {
          for (std::int64_t x = 0; x < d; ++x) dst[x] = T(0);
          return;
        }
        for (std::int64_t x = 0; x < d; ++x) dst[x] = t(b, row, h, x);
      });
}

// tensor[b, shard_row(r), h, :] (+)= buf[r, :]; other rows are left alone.
template <class ExecSpace, class T>
void unpack_rows(const ExecSpace& space, const SparseRows& s, const T* buf,
                 const TensorRef<T, 4>& t, bool add) {
  const std::int64_t d = s.head_dim;
  Kokkos::parallel_for(
      "dilated::dist::unpack_rows",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, s.rows()),
      KOKKOS_LAMBDA(const std::int64_t r) {
        std::int64_t b, h;
        const std::int64_t row = s.shard_row(r, &b, &h);
        if (row < 0) return;
        const T* src = buf + r * d;
        for (std::int64_t x = 0; x < d; ++x) t(b, row, h, x) = add ? t(b, row, h, x) + src[x] : src[x];
      });
}

// tensor[b, shard_row(r), h, :] = 0: clears exactly the rows unpack_rows
// and pack_rows touch (1/r of the shard), e.g. a dK/dV block before the
// windowed backward adds into it.
template <class ExecSpace, class T>
void zero_rows(const ExecSpace& space, const SparseRows& s, const TensorRef<T, 4>& t) {
  const std::int64_t d = s.head_dim;
  Kokkos::parallel_for(
      "dilated::dist::zero_rows",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, s.rows() * d),
      KOKKOS_LAMBDA(const std::int64_t i) {
        std::int64_t b, h;
        const std::int64_t row = s.shard_row(i / d, &b, &h);
        if (row >= 0) t(b, row, h, i % d) = T(0);
      });
}

}  // namespace dist
}  // namespace dilated
