// cuda_fa3/details/mask.cuh - masks the scores of one key block: keys past the
// segment's kept rows (or the key window's end, `key_end`, in sparse rows),
// and (causal) keys after the query. Only the blocks that
// straddle a boundary pay for it; the caller checks `needs_mask` first.
#pragma once

#include <cmath>
#include <cstdint>

namespace dilated::cuda_fa3::details {

template <int BlockN>
__device__ __forceinline__ bool needs_mask(std::int64_t key_begin, std::int64_t key_end,
                                           std::int64_t q_begin, bool causal) {
  return key_begin + BlockN > key_end || (causal && key_begin + BlockN - 1 > q_begin);
}

// rows[r]: sparse query index of the thread's row r; lane: the thread's lane.
template <int BlockN>
__device__ __forceinline__ void apply_mask(float (&s)[BlockN / 2], std::int64_t key_begin,
                                           std::int64_t key_end, const std::int64_t (&rows)[2],
                                           bool causal, int lane) {
#pragma unroll
  for (int j = 0; j < BlockN / 8; ++j) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const std::int64_t key = key_begin + 8 * j + 2 * (lane % 4) + c;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const bool visible = key < key_end && (!causal || key <= rows[r]);
        if (!visible) s[4 * j + 2 * r + c] = -INFINITY;
      }
    }
  }
}

}  // namespace dilated::cuda_fa3::details
