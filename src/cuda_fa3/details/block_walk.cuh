// cuda_fa3/details/block_walk.cuh - the blocks of rows a tile visits, in order:
// the forward's key blocks of a query tile, the backward's query blocks of a
// key tile. Dense/dilated: block i starts at i * Block. Block-sparse: the
// tile's runs (dilated/pattern.hpp key_spans / query_spans) cut into
// Block-row blocks; runs start and end on multiples of block_q/block_k, which
// plan.cu requires to be multiples of 128 (so of Block), except at the
// sequence end or the causal limit, where the kernels' masks take the rest.
#pragma once

#include <cstdint>

#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

// Each walker is advanced by one thread (or uniformly by a warpgroup) exactly
// once per block, in block order.
// It refers to the tile's spans (a walker per thread and purpose shares
// them, instead of each holding a copy in registers).
template <int Block, bool kBlockSparse>
struct BlockWalk {
  const Spans& spans;
  std::int64_t row = 0, end = 0;
  int next_span = 0;
  __device__ __forceinline__ explicit BlockWalk(const Spans& s) : spans(s) {}
  // First row of block i (i is only used when not block-sparse).
  __device__ __forceinline__ std::int64_t next(std::int64_t i) {
    if constexpr (!kBlockSparse) {
      return i * Block;
    } else {
      while (row >= end) spans.get(next_span++, &row, &end);  // skips empty spans
      const std::int64_t r = row;
      row += Block;
      return r;
    }
  }
};

// Blocks of Block rows over all of a tile's spans.
template <int Block>
__device__ __forceinline__ int count_blocks(const Spans& spans) {
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < spans.count; ++i) {
    std::int64_t b, e;
    spans.get(i, &b, &e);
    if (e > b) n += (e - b + Block - 1) / Block;
  }
  return int(n);
}

// Windowed calls (sequence parallelism), in 32-bit arithmetic: plan.cu
// admits them only for sequences shorter than 2^31 (TMA row coordinates are
// 32-bit anyway), and 64-bit divisions here made ptxas spill in every
// forward and backward variant (the producers run on 24 registers).
//
// The sparse rows [*j0, *j1) of (branch i, segment s, offset o) whose
// positions lie in the window [begin, begin + len) (pattern.hpp's
// window_range).
__device__ __forceinline__ void window_rows(const PatternParams& p, int i, std::int64_t s, std::int64_t o,
                                            std::int64_t begin, std::int64_t len, std::int64_t* j0,
                                            std::int64_t* j1) {
  const int kept = int(p.kept_count(i, s, o)), r = int(p.dilation[i]);
  const int base = int(p.segment_begin(i, s) + o);
  const int b = int(begin) - base, e = int(begin + len) - base;
  const int first = b <= 0 ? 0 : (b + r - 1) / r, end = e <= 0 ? 0 : (e + r - 1) / r;
  *j0 = first < kept ? first : kept;
  *j1 = end < kept ? end : kept;
}

// Which descriptor and row hold sparse row 0 of a (segment, offset) whose
// first position is `first`, in a window tensor starting at position `begin`
// (floor division: sparse row 0 may lie before the window).
__device__ __forceinline__ void window_map_row(std::int64_t first, std::int64_t begin, std::int64_t r,
                                               int* phase, std::int64_t* row0) {
  const int local = int(first - begin), r32 = int(r);
  const int ph = ((local % r32) + r32) % r32;
  *phase = ph;
  *row0 = (local - ph) / r32;
}

}  // namespace dilated::cuda_fa3::details
