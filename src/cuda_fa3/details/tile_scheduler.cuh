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
  std::int64_t q_end;        // sparse query rows of this (segment, offset) in the query window end here
  std::int64_t k_begin;      // sparse key rows in the key window: [k_begin, k_end)
  std::int64_t k_end;
  std::int64_t first;        // original position of sparse row 0
  // Q (and out) and K/V are separate windows of the sequence, each with its
  // own TMA descriptors: sparse row j is row map_row0 + j of descriptor
  // `phase` (row (first - window begin) % r of the window tensor + j r).
  int q_phase, k_phase;
  std::int64_t q_map_row0, k_map_row0;
  int key_blocks;            // key blocks to visit (from k_begin)
  bool active;               // false: nothing to do (inactive head, ragged tail, no blocks)
  Spans spans;               // block-sparse: the key runs the tile visits (pattern.hpp)
  std::int64_t q_stride;     // positions between the tile's sparse rows (r), for the epilogue
  // LongNet chains (kDedup kernels, dedup_tile): keys [skip_begin, skip_end)
  // are counted by the previous chain branch and not visited here.
  std::int32_t skip_begin, skip_end;
  // Block-sparse schedule entries (decode_entry_tile): the first key of the
  // tile's last key block, the only one that may need a mask (TileEntry).
  std::int64_t last_key;
  // Fused LongNet chains (decode_fused_tile): the tile's unit and row class.
  std::int32_t chain_unit, chain_class;
};

// entry: the tile's record in the plan's schedule (tile_schedule.hpp), which
// carries its key block count and runs; null: read them from the layout.
// kFast: the consumers' decode, by multiply-shift where the launch enables it
// (fast_decode.hpp); the producer (24 registers) keeps the 64-bit one, which
// it runs ahead of the consumers anyway: with both, ptxas spilled 68-372
// bytes in the forward kernels (CUDA 13.0).
template <int BlockM, int BlockN, bool kFast = false>
__device__ __forceinline__ QueryTile decode_tile(const ForwardParams& p, std::int64_t idx,
                                                 const TileEntry* entry = nullptr) {
  QueryTile t{};
  const int i = p.branch;
  if (kFast && p.decode.enabled) {  // fast_decode.hpp: the same numbers without 64-bit divisions
    const std::int64_t r = p.pattern.dilation[i];
    const TileCoords c = fast_tile_coords(p.decode, std::uint32_t(idx), p.causal, p.tiles_per_segment,
                                          p.first_segment, p.pattern.segment_length[i], p.pattern.seq_len);
    t.segment = c.segment;
    t.h = c.h;
    t.b = c.b;
    t.active = true;  // LongNet mode: every head runs every branch
    t.q_stride = r;
    t.k_begin = 0;
    t.q_end = t.k_end = c.kept;
    t.q_begin = c.qt * BlockM;
    if (t.q_begin >= t.q_end) {
      t.active = false;
      return t;
    }
    t.q_count = t.q_end - t.q_begin < BlockM ? t.q_end - t.q_begin : BlockM;
    t.first = c.first;
    const std::uint32_t row0 = p.decode.dilation.div(std::uint32_t(c.first));
    t.q_phase = t.k_phase = int(std::uint32_t(c.first) - row0 * std::uint32_t(r));
    t.q_map_row0 = t.k_map_row0 = row0;
    const std::int64_t keys = key_range_end(p.causal, t.k_end, t.q_begin, t.q_count);
    if (keys <= 0) {
      t.active = false;
      return t;
    }
    t.key_blocks = int((keys + BlockN - 1) / BlockN);
    return t;
  }
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
  t.segment = p.first_segment + g % p.num_segments;
  t.h = int((g / p.num_segments) % p.heads);
  t.b = int(g / (std::int64_t(p.num_segments) * p.heads));
  t.active = p.pattern.active(t.h, i);
  const std::int64_t o = p.pattern.offset(t.h, i);
  // Sparse rows of this (segment, offset) inside the query and key windows.
  // Whole-sequence launches keep the earlier arithmetic ([0, kept) for both,
  // one descriptor row for Q and K); windowed ones use window_rows (32-bit:
  // with 64-bit divisions ptxas spilled 100-260 bytes in every forward
  // variant, CUDA 13.0; this form has none). (r loaded here, not at the top:
  // live across the divisions above, it made the 24-register producer spill.)
  const std::int64_t r = p.pattern.dilation[i];
  t.q_stride = r;
  std::int64_t q0 = 0;
  if (!p.windowed) {
    t.k_begin = 0;
    t.q_end = t.k_end = p.pattern.kept_count(i, t.segment, o);
  } else {
    window_rows(p.pattern, i, t.segment, o, p.q_window_begin, p.q_window_len, &q0, &t.q_end);
    window_rows(p.pattern, i, t.segment, o, p.k_window_begin, p.k_window_len, &t.k_begin, &t.k_end);
  }
  t.q_begin = q0 + qt * BlockM;
  if (!t.active || t.q_begin >= t.q_end || t.k_begin >= t.k_end) {
    t.active = false;
    return t;
  }
  t.q_count = t.q_end - t.q_begin < BlockM ? t.q_end - t.q_begin : BlockM;
  t.first = p.pattern.position(i, t.segment, o, 0);
  if (!p.windowed) {
    t.q_phase = t.k_phase = int(t.first % r);
    t.q_map_row0 = t.k_map_row0 = t.first / r;
  } else {
    window_map_row(t.first, p.q_window_begin, r, &t.q_phase, &t.q_map_row0);
    window_map_row(t.first, p.k_window_begin, r, &t.k_phase, &t.k_map_row0);
  }
  const std::int64_t keys = key_range_end(p.causal, t.k_end, t.q_begin, t.q_count) - t.k_begin;
  if (keys <= 0) {  // causal: every key of the window comes after the tile's queries
    t.active = false;
    return t;
  }
  t.key_blocks = int((keys + BlockN - 1) / BlockN);
  if (p.pattern.block_sparse.enabled()) {
    // One branch over the whole sequence (sparse index = position, no
    // windowed calls: plan.cu refuses them); the tile
    // lies in one query block because block_q % BlockM == 0 (plan.cu).
    if (entry) {  // key_spans' runs, from the entry: no dependent loads at the tile start
      t.spans.runs = p.pattern.block_sparse.row_runs + 2 * std::int64_t(entry->run_begin);
      t.spans.count = entry->run_count;
      t.spans.block = p.pattern.block_sparse.block_k;
      t.spans.lo = 0;
      t.spans.hi = key_range_end(p.causal, t.k_end, t.q_begin, t.q_count);
      t.key_blocks = entry->key_blocks;
    } else {
      t.spans = key_spans(p.pattern, p.causal, t.h, 0, t.k_end, t.q_begin, t.q_count);
      // The plan's per-tile counts (block_sparse_device.hpp) cost one load;
      // counting over the runs here cost a dependent global load per run at
      // every tile start, in every consumer thread. The plan counts 128-row
      // tiles; other tile heights count here.
      t.key_blocks = BlockM == 128 && p.tile_blocks
                         ? p.tile_blocks[p.pattern.block_sparse.layout_of(t.h) * p.tiles_per_segment + qt]
                         : count_blocks<BlockN>(t.spans);
    }
    if (t.key_blocks == 0) t.active = false;  // rows left as filled: out 0, lse -inf
  }
  return t;
}

// A block-sparse tile from its schedule entry, decoded on the host
// (tile_schedule.hpp): one segment of the whole sequence, r = 1, sparse
// index = position, not windowed (plan.cu), so decode_tile's result is this
// with no divisions, and `active` since the schedule lists only tiles with
// key blocks. (decode_tile took 5.6% of the block-sparse 16K kernel's warp
// samples at each tile start, h100-fa3-2026-11-27-epilogue.)
template <int BlockM>
__device__ __forceinline__ QueryTile decode_entry_tile(const ForwardParams& p, const TileEntry& e) {
  QueryTile t{};
  const std::int64_t n = p.pattern.seq_len;  // kept_count of the one segment
  t.b = e.b;
  t.h = e.h;
  t.q_begin = e.q_begin;
  t.q_end = t.k_end = n;
  t.q_stride = 1;
  t.q_count = n - t.q_begin < BlockM ? n - t.q_begin : BlockM;
  t.active = true;
  t.spans.runs = p.pattern.block_sparse.row_runs + 2 * std::int64_t(e.run_begin);
  t.spans.count = e.run_count;
  t.spans.block = p.pattern.block_sparse.block_k;
  t.spans.hi = key_range_end(p.causal, n, t.q_begin, t.q_count);
  t.key_blocks = e.key_blocks;
  t.last_key = e.last_key;
  return t;  // segment, k_begin, first, phases, map rows, spans.lo: 0
}

// A tile of a fused LongNet chain (longnet_fused_chain.hpp): 128 rows of one
// class of one unit, read through the descriptor of residue o_0 + r_0 c
// (stride r_L), whose rows are unit * class_rows + i. Every tile is whole
// and has keys (fused_chain_plan).
template <int BlockM, int BlockN>
__device__ __forceinline__ QueryTile decode_fused_tile(const ForwardParams& p, std::int64_t idx) {
  static_assert(BlockM == kFusedTileRows, "fused chains run 128-row tiles");
  const FusedChainParams& f = p.chain;
  const FusedTileCoords c = fused_tile_coords(f, std::uint32_t(idx));
  QueryTile t{};
  t.b = c.b;
  t.h = c.h;
  t.segment = c.unit;
  t.chain_unit = c.unit;
  t.chain_class = c.cls;
  const std::int32_t hc = fused_head_class(f, c.h);
  const std::int32_t phase = c.h - hc * f.dilation0 + f.dilation0 * c.cls;  // o_0 + r_0 c
  t.q_phase = t.k_phase = phase;
  t.q_stride = std::int64_t(f.dilation0) * f.classes;
  t.q_map_row0 = t.k_map_row0 = std::int64_t(c.unit) * f.class_rows;
  t.first = std::int64_t(c.unit) * f.unit + phase;
  t.q_begin = std::int64_t(c.sub) * BlockM;
  t.q_end = t.k_end = f.class_rows;
  t.q_count = BlockM;
  t.key_blocks = fused_tile_blocks(f, hc, c.cls, BlockN);
  t.active = true;
  return t;
}

// A skipping branch of a LongNet chain (longnet_dedup.hpp): the tile visits
// its segment's keys but the run the previous chain branch counts for it.
// Non-windowed launches only (k_begin = 0). A tile left with no key block
// keeps the rows the earlier branches merged (its keys are all counted there).
template <int BlockN>
__device__ __forceinline__ void dedup_tile(const ForwardParams& p, QueryTile& t) {
  t.skip_begin = t.skip_end = 0;
  if (!t.active || p.dedup.skip_keys == 0) return;
  dedup_skip(p.dedup.skip_keys, std::int32_t(t.q_begin), std::int32_t(t.k_end), BlockN, &t.skip_begin, &t.skip_end,
             &t.key_blocks);
  if (t.key_blocks == 0) t.active = false;
}

}  // namespace dilated::cuda_fa3::details
