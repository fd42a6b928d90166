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

}  // namespace dilated::cuda_fa3::details
