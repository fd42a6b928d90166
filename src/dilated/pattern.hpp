// dilated/pattern.hpp - THE dilation rule: which positions a head keeps in a
// branch, and hence which key tiles a query tile visits.
//
// It also holds the block-sparse rule (BlockSparseRule, key_spans,
// query_spans): which key blocks a query tile visits and the transpose.
//
// This is the single place that defines the sparsity pattern; the portable
// Kokkos kernels, the float64 reference and the CUDA backend all call it.
//
// Branch i cuts [0, N) into segments [s*w, min((s+1)*w, N)). In segment s a
// head with offset o keeps the positions begin(s) + o + j*r, j = 0, 1, ...
// ("sparse index" j). When r does not divide w the number of kept positions
// depends on o (ragged), and it may be 0 when o >= the segment's length.
// Queries, keys and values are sparsified identically, so attention inside a
// branch is dense attention over the sparse sequence of each segment; causal
// masking compares original positions, which for one (segment, offset) is
// the same as comparing sparse indices.
#pragma once

#include <cstdint>

#include "dilated/config.hpp"
#include "dilated/host_device.hpp"

namespace dilated {

// Block-sparse attention (block_sparse.hpp) as the kernels see it: the
// user's block mask as runs of consecutive visited blocks, in memory the
// kernels can read (the plan owns it; device memory for a device backend).
// Trivially copyable, so it travels inside PatternParams by value.
//
// Tiles: a kernel tile never crosses a block boundary, so a query tile has
// one query block (and one list of key runs) and a key tile one key block.
// A block of `block` rows in tiles of `tile` rows has ceil(block / tile)
// tiles, the last of them (and the sequence's last block) possibly short.
struct BlockSparseRule {
  std::int64_t block_q = 0, block_k = 0;  // block_q == 0: no block-sparse pattern
  std::int64_t num_q_blocks = 0, num_k_blocks = 0;
  std::int64_t layouts = 0;  // 1: shared by every head; else one per head
  std::int64_t seq_len = 0;
  // Every query row sees at least one key (under the config's causal rule),
  // so a kernel that writes the rows of its tiles covers the whole output;
  // false: some rows attend to nothing and need out 0, lse -inf written.
  bool rows_all_attend = false;
  // Runs of key blocks visited by (layout l, query block i):
  // row_runs[2r], row_runs[2r + 1] = [first, last + 1) for r in
  // [row_offsets[l * num_q_blocks + i], row_offsets[l * num_q_blocks + i + 1]).
  const std::int64_t* row_offsets = nullptr;
  const std::int32_t* row_runs = nullptr;
  // The transpose: runs of query blocks visiting (layout l, key block j).
  const std::int64_t* col_offsets = nullptr;
  const std::int32_t* col_runs = nullptr;

  DILATED_INLINE bool enabled() const { return block_q > 0; }
  DILATED_INLINE std::int64_t layout_of(std::int64_t h) const { return layouts == 1 ? 0 : h; }
  // Query side (keys == false) or key side (keys == true).
  DILATED_INLINE std::int64_t block(bool keys) const { return keys ? block_k : block_q; }
  DILATED_INLINE std::int64_t tiles_per_block(bool keys, std::int64_t tile) const {
    const std::int64_t b = block(keys) < seq_len ? block(keys) : seq_len;
    return (b + tile - 1) / tile;
  }
  DILATED_INLINE std::int64_t num_tiles(bool keys, std::int64_t tile) const {
    return (keys ? num_k_blocks : num_q_blocks) * tiles_per_block(keys, tile);
  }
  // Rows [*begin, *begin + *count) of tile t; *count == 0 for the spare
  // tiles of a short last block.
  DILATED_INLINE void tile_range(bool keys, std::int64_t tile, std::int64_t t, std::int64_t* begin,
                                 std::int64_t* count) const {
    const std::int64_t per = tiles_per_block(keys, tile), blk = t / per;
    const std::int64_t b0 = blk * block(keys) + (t - blk * per) * tile;
    std::int64_t e = (blk + 1) * block(keys);
    e = e < seq_len ? e : seq_len;
    e = e < b0 + tile ? e : b0 + tile;
    *begin = b0;
    *count = e > b0 ? e - b0 : 0;
  }
};

// Ranges of positions a tile visits: the key ranges of a query tile, or the
// query ranges of a key tile. A dilated branch has one range; a block-sparse
// pattern one per run of visited blocks, clipped to [lo, hi) (causal limits).
struct Spans {
  const std::int32_t* runs = nullptr;  // null: the single range [lo, hi)
  std::int64_t count = 0, block = 0, lo = 0, hi = 0;
  DILATED_INLINE void get(std::int64_t i, std::int64_t* begin, std::int64_t* end) const {
    if (!runs) {
      *begin = lo;
      *end = hi;
      return;
    }
    const std::int64_t b = runs[2 * i] * block, e = runs[2 * i + 1] * block;
    *begin = b > lo ? b : lo;
    *end = e < hi ? e : hi;  // may be empty (begin >= end) after causal clipping
  }
};

// Trivially copyable description of all branches and the head mode, passed by
// value into kernels.
// ceil(a / b) for a >= 0, b > 0 without forming a + b - 1, which overflows
// for the huge segment lengths or dilations validation lets through (a
// partial-segment config's w may exceed N; found by fuzz_plan).
DILATED_INLINE std::int64_t ceil_div_nonneg(std::int64_t a, std::int64_t b) {
  return a / b + (a % b != 0 ? 1 : 0);
}

struct PatternParams {
  int num_branches = 0;
  int head_mode = 0;  // 0 = LongNet, 1 = HeadGroups
  std::int64_t seq_len = 0;
  std::int64_t heads = 0;
  std::int64_t segment_length[kMaxBranches] = {};
  std::int64_t dilation[kMaxBranches] = {};
  // Set for block-sparse configs (then: one branch, w = N, r = 1).
  BlockSparseRule block_sparse;

  // Head-group mode: the group (= branch) a head belongs to. Groups are
  // contiguous; the first heads % k groups have one extra head.
  DILATED_INLINE int group_of_head(std::int64_t h) const {
    const std::int64_t k = num_branches;
    const std::int64_t base = heads / k, rem = heads % k;
    const std::int64_t big = rem * (base + 1);
    return static_cast<int>(h < big ? h / (base + 1) : rem + (h - big) / base);
  }
  // Does head h run branch i at all?
  DILATED_INLINE bool active(std::int64_t h, int i) const {
    return head_mode == 0 || group_of_head(h) == i;
  }
  // The head's offset inside each segment of branch i.
  DILATED_INLINE std::int64_t offset(std::int64_t h, int i) const {
    return head_mode == 0 ? h % dilation[i] : static_cast<std::int64_t>(i) % dilation[i];
  }
  // Factor applied to the merged output (1 for LongNet; 1/k for head groups,
  // which average the branch outputs).
  DILATED_INLINE double output_scale() const {
    return head_mode == 0 ? 1.0 : 1.0 / num_branches;
  }
  DILATED_INLINE std::int64_t num_segments(int i) const {
    return ceil_div_nonneg(seq_len, segment_length[i]);
  }
  DILATED_INLINE std::int64_t segment_begin(int i, std::int64_t s) const {
    return s * segment_length[i];
  }
  DILATED_INLINE std::int64_t segment_end(int i, std::int64_t s) const {
    const std::int64_t e = (s + 1) * segment_length[i];
    return e < seq_len ? e : seq_len;
  }
  // Number of positions offset o keeps in segment s of branch i.
  DILATED_INLINE std::int64_t kept_count(int i, std::int64_t s, std::int64_t o) const {
    const std::int64_t len = segment_end(i, s) - segment_begin(i, s);
    return len > o ? ceil_div_nonneg(len - o, dilation[i]) : 0;
  }
  // Upper bound of kept_count over all segments and offsets.
  DILATED_INLINE std::int64_t max_kept_count(int i) const {
    const std::int64_t len = segment_length[i] < seq_len ? segment_length[i] : seq_len;
    return ceil_div_nonneg(len, dilation[i]);
  }
  // Original position of sparse index j in segment s with offset o.
  DILATED_INLINE std::int64_t position(int i, std::int64_t s, std::int64_t o, std::int64_t j) const {
    return segment_begin(i, s) + o + j * dilation[i];
  }
  // The sparse indices of segment s (branch i, offset o) whose positions lie
  // in the window [begin, end) of the sequence: [*j0, *j1), empty if j0 >= j1.
  // Plain calls use the whole sequence; sequence parallelism (src/dist) runs
  // queries and keys from different windows (a rank's shard, a peer's shard).
  DILATED_INLINE void window_range(int i, std::int64_t s, std::int64_t o, std::int64_t begin,
                                   std::int64_t end, std::int64_t* j0, std::int64_t* j1) const {
    const std::int64_t base = segment_begin(i, s) + o, r = dilation[i];
    const std::int64_t kept = kept_count(i, s, o);
    const std::int64_t a = begin <= base ? 0 : ceil_div_nonneg(begin - base, r);  // first >= begin
    const std::int64_t b = end <= base ? 0 : ceil_div_nonneg(end - base, r);      // first >= end
    *j0 = a < kept ? a : kept;
    *j1 = b < kept ? b : kept;
  }
  // Upper bound of the kept positions of one (segment, offset) inside any
  // window of `len` positions.
  DILATED_INLINE std::int64_t max_kept_in_window(int i, std::int64_t len) const {
    const std::int64_t w = segment_length[i] < seq_len ? segment_length[i] : seq_len;
    const std::int64_t n = len < w ? len : w;
    return ceil_div_nonneg(n, dilation[i]);
  }
  // Is position p kept by (branch i, offset o)? If so, *seg and *j receive its
  // segment and sparse index.
  DILATED_INLINE bool keeps(int i, std::int64_t o, std::int64_t p, std::int64_t* seg,
                            std::int64_t* j) const {
    const std::int64_t s = p / segment_length[i];
    const std::int64_t local = p - s * segment_length[i] - o;
    if (local < 0 || local % dilation[i] != 0) return false;
    *seg = s;
    *j = local / dilation[i];
    return true;
  }
};

// The end of the key range a query tile visits, in sparse indices of its
// segment, given the keys available end at `key_end`. Non-causal: all of them.
// Causal: up to and including the tile's last query (keys after it are masked
// for every row of the tile).
DILATED_INLINE std::int64_t key_range_end(bool causal, std::int64_t key_end,
                                          std::int64_t query_begin, std::int64_t query_count) {
  const std::int64_t last = query_begin + query_count;
  return causal && last < key_end ? last : key_end;
}
// The first query that visits a key tile starting at `key_begin`, given the
// queries available start at `query_begin` (sparse indices).
DILATED_INLINE std::int64_t query_range_begin(bool causal, std::int64_t query_begin,
                                              std::int64_t key_begin) {
  return causal && key_begin > query_begin ? key_begin : query_begin;
}

// The key ranges (sparse indices of the segment) that query tile
// [q0, q0 + qn) of head h visits, given the keys available are
// [key_begin, key_end). Dilated branch: one range, causally clipped.
// Block-sparse: the runs of the tile's query block (the tile lies in one).
DILATED_INLINE Spans key_spans(const PatternParams& p, bool causal, std::int64_t h,
                               std::int64_t key_begin, std::int64_t key_end, std::int64_t q0,
                               std::int64_t qn) {
  Spans s;
  s.lo = key_begin;
  s.hi = key_range_end(causal, key_end, q0, qn);
  s.count = 1;
  const BlockSparseRule& r = p.block_sparse;
  if (r.enabled()) {
    const std::int64_t row = r.layout_of(h) * r.num_q_blocks + q0 / r.block_q;
    s.runs = r.row_runs + 2 * r.row_offsets[row];
    s.count = r.row_offsets[row + 1] - r.row_offsets[row];
    s.block = r.block_k;
  }
  return s;
}
// The query ranges that visit key tile [k0, ...) of head h, given the
// queries available are [query_begin, query_end). Causal: from k0 on.
DILATED_INLINE Spans query_spans(const PatternParams& p, bool causal, std::int64_t h,
                                 std::int64_t query_begin, std::int64_t query_end,
                                 std::int64_t k0) {
  Spans s;
  s.lo = query_range_begin(causal, query_begin, k0);
  s.hi = query_end;
  s.count = 1;
  const BlockSparseRule& r = p.block_sparse;
  if (r.enabled()) {
    const std::int64_t col = r.layout_of(h) * r.num_k_blocks + k0 / r.block_k;
    s.runs = r.col_runs + 2 * r.col_offsets[col];
    s.count = r.col_offsets[col + 1] - r.col_offsets[col];
    s.block = r.block_q;
  }
  return s;
}

PatternParams make_pattern(const AttentionConfig& config, const ProblemShape& shape);

}  // namespace dilated
