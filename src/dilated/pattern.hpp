// dilated/pattern.hpp - THE dilation rule: which positions a head keeps in a
// branch, and hence which key tiles a query tile visits.
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

// Trivially copyable description of all branches and the head mode, passed by
// value into kernels.
struct PatternParams {
  int num_branches = 0;
  int head_mode = 0;  // 0 = LongNet, 1 = HeadGroups
  std::int64_t seq_len = 0;
  std::int64_t heads = 0;
  std::int64_t segment_length[kMaxBranches] = {};
  std::int64_t dilation[kMaxBranches] = {};

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
    return (seq_len + segment_length[i] - 1) / segment_length[i];
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
    return len > o ? (len - o + dilation[i] - 1) / dilation[i] : 0;
  }
  // Upper bound of kept_count over all segments and offsets.
  DILATED_INLINE std::int64_t max_kept_count(int i) const {
    const std::int64_t len = segment_length[i] < seq_len ? segment_length[i] : seq_len;
    return (len + dilation[i] - 1) / dilation[i];
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
    const std::int64_t a = begin <= base ? 0 : (begin - base + r - 1) / r;  // first at >= begin
    const std::int64_t b = end <= base ? 0 : (end - base + r - 1) / r;      // first at >= end
    *j0 = a < kept ? a : kept;
    *j1 = b < kept ? b : kept;
  }
  // Upper bound of the kept positions of one (segment, offset) inside any
  // window of `len` positions.
  DILATED_INLINE std::int64_t max_kept_in_window(int i, std::int64_t len) const {
    const std::int64_t w = segment_length[i] < seq_len ? segment_length[i] : seq_len;
    const std::int64_t n = len < w ? len : w;
    return (n + dilation[i] - 1) / dilation[i];
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

PatternParams make_pattern(const AttentionConfig& config, const ProblemShape& shape);

}  // namespace dilated
