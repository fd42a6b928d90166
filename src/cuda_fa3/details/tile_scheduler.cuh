// cuda_fa3/details/tile_scheduler.cuh - which (batch, head, segment, query
// tile) a CTA owns, and the rows and key blocks that follow from the pattern
// (dilated branches, or the block-sparse rule of dilated/pattern.hpp).
#pragma once

#include <cstdint>

#include "cuda_fa3/details/block_walk.cuh"
#include "cuda_fa3/details/forward_params.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

struct QueryTile {
  int b, h;
  std::int64_t segment;
  std::int64_t q_begin;      // first sparse query row of the tile
  std::int64_t q_count;      // rows of the tile that exist (<= kBlockM)
  std::int64_t kept;         // sparse rows of this (segment, offset)
  std::int64_t first;        // original position of sparse row 0
  int phase;                 // first % r: which TMA descriptor
  std::int64_t map_row0;     // row of sparse index 0 in that descriptor
  int key_blocks;            // key blocks to visit
  bool active;               // false: nothing to do (inactive head, ragged tail, no blocks)
  Spans spans;               // block-sparse: the key runs the tile visits (pattern.hpp)
};

template <int BlockM, int BlockN>
__device__ __forceinline__ QueryTile decode_tile(const ForwardParams& p, std::int64_t idx) {
  QueryTile t{};
  const std::int64_t groups = std::int64_t(p.batch) * p.heads * p.num_segments;
  // Causal tiles near the end of a segment do the most work: hand them out
  // first so the grid's tail is short. Otherwise neighbouring CTAs share a
  // segment, so its K/V stay in L2.
  std::int64_t qt, g;
  if (p.causal) {
    qt = p.tiles_per_segment - 1 - idx / groups;
    g = idx % groups;
  } else {
    qt = idx % p.tiles_per_segment;
    g = idx / p.tiles_per_segment;
  }
  t.segment = g % p.num_segments;
  t.h = int((g / p.num_segments) % p.heads);
  t.b = int(g / (std::int64_t(p.num_segments) * p.heads));
  const int i = p.branch;
  t.active = p.pattern.active(t.h, i);
  const std::int64_t o = p.pattern.offset(t.h, i);
  t.kept = p.pattern.kept_count(i, t.segment, o);
  t.q_begin = qt * BlockM;
  if (!t.active || t.q_begin >= t.kept) {
    t.active = false;
    return t;
  }
  t.q_count = t.kept - t.q_begin < BlockM ? t.kept - t.q_begin : BlockM;
  t.first = p.pattern.position(i, t.segment, o, 0);
  const std::int64_t r = p.pattern.dilation[i];
  t.phase = int(t.first % r);
  t.map_row0 = t.first / r;
  const std::int64_t keys = key_range_end(p.causal, t.kept, t.q_begin, t.q_count);
  t.key_blocks = int((keys + BlockN - 1) / BlockN);
  if (p.pattern.block_sparse.enabled()) {
    // One branch over the whole sequence (sparse index = position); the tile
    // lies in one query block because block_q % BlockM == 0 (plan.cu).
    t.spans = key_spans(p.pattern, p.causal, t.h, 0, t.kept, t.q_begin, t.q_count);
    t.key_blocks = count_blocks<BlockN>(t.spans);
    if (t.key_blocks == 0) t.active = false;  // rows left as filled: out 0, lse -inf
  }
  return t;
}

}  // namespace dilated::cuda_fa3::details
