// cuda_fa3/details/longnet_dedup.hpp - LongNet forward without visiting a
// (query, key) pair twice: the nesting rule, which key blocks a query tile of
// a nested branch skips, and the weight its chain's lower branches give the
// keys they visit for the skipping ones. Host and device (no CUDA needed:
// unit_tests/test_longnet_dedup.cpp checks it on the CPU).
//
// LongNet's merge (Eq. 10) of the branches' softmaxes equals one softmax over
// the multiset union of their key lists: a key that m branches keep for a
// query counts m times. Branches a < b are *nested* when r_a | r_b with
// r_b / r_a in {2, 4, 8}, w_a | w_b, and r_b | w_a (hence r_a | w_a, and r_b |
// w_b). Then (offsets o = h mod r, LongNet head mode):
//  - a query q that b keeps is kept by a, and every key b keeps for q that
//    lies in q's own segment of a is kept by a for q (positions there are
//    = o_b mod r_b, so = o_a mod r_a). Branch b may skip those keys if a
//    counts them twice;
//  - in a's segment, with kept-row index j (q = start + o_a + j r_a) and
//    kept-key index i, b keeps (q, key) iff j = c and i = c mod (r_b / r_a),
//    c = (h / r_a) mod (r_b / r_a): the class of the head's offset o_b above
//    o_a.
// A *chain* is a run of consecutive branches, each nested with every earlier
// member and (for the skip) w_{b-1} % (128 r_b) == 0, so a skipping branch's
// 128-row query tiles and 128- or 64-key blocks never straddle one of b-1's
// segments: its tile skips one run of w_{b-1} / r_b keys, starting at a
// multiple of that. Branch a of a chain visits its keys with multiplicity
// m = 1 + sum over the later members c of [row class][key class], which is
// the number of chain branches keeping the pair (c keeps a pair of q's
// b-segment only if b does, by the same argument).
//
// In the wgmma accumulator layout a thread holds rows = lane / 4 (mod 8) and
// columns = 2 (lane % 4) + {0, 1} (mod 8) in every register, since tiles
// and key blocks start at multiples of 8 kept rows / keys. r_c / r_a divides 8,
// so m depends only on (head, lane, column parity): two per-thread constants
// per tile, added as log2(m) to the exp2 argument (softmax.cuh).
#pragma once

#include <cstdint>

#include "dilated/host_device.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

inline constexpr int kDedupMaxWeights = 3;  // later chain members (ratios 2, 4, 8)
inline constexpr int kDedupTileRows = 128;  // query rows of a skipping branch's tile (and key alignment)

// One forward launch's part of the schedule (ForwardParams::dedup).
struct DedupParams {
  // > 0: each query tile skips the w_{i-1} / r_i kept keys of its own
  // segment of the previous chain branch (which counts them).
  std::int32_t skip_keys = 0;
  // Later chain members weighting this branch's keys, each by the ratio
  // r_c / r_i (2, 4 or 8) of its dilation to this branch's.
  std::int32_t weights = 0;
  std::int32_t ratio[kDedupMaxWeights] = {};
  std::int32_t dilation = 1;  // r_i
  DILATED_INLINE bool active() const { return skip_keys > 0 || weights > 0; }
};

// Branches a < c of p nested (above). Segment lengths below 2^31 (the
// kernel's tile arithmetic is 32-bit).
DILATED_INLINE bool dedup_nested(const PatternParams& p, int a, int c) {
  const std::int64_t ra = p.dilation[a], rc = p.dilation[c], wa = p.segment_length[a], wc = p.segment_length[c];
  if (wc >= (std::int64_t(1) << 31) || rc % ra != 0) return false;
  const std::int64_t k = rc / ra;
  return (k == 2 || k == 4 || k == 8) && wc % wa == 0 && wa % rc == 0;
}

// The chain schedule of a LongNet forward, per branch (out[i]). eligible:
// the launch may use it at all (LongNet head mode, non-causal, no dropout,
// not block-sparse, whole-sequence launches); default_keys[i]: branch i
// runs its head_dim's default key block (the dedup kernels are instantiated
// for those only: 128, or 64 at head_dim 256; not the 176 of long rows).
inline void longnet_dedup_plan(const PatternParams& p, bool eligible, const bool* default_keys, DedupParams* out) {
  for (int i = 0; i < p.num_branches; ++i) out[i] = DedupParams{};
  if (!eligible || p.head_mode != 0) return;
  int start = 0;
  while (start < p.num_branches) {
    int end = start + 1;  // members [start, end)
    if (default_keys[start]) {
      while (end < p.num_branches && default_keys[end] &&
             p.segment_length[end - 1] % (std::int64_t(kDedupTileRows) * p.dilation[end]) == 0) {
        bool nested = true;
        for (int m = start; m < end; ++m) nested = nested && dedup_nested(p, m, end);
        if (!nested) break;
        ++end;
      }
    }
    for (int i = start; i < end; ++i) {
      DedupParams& d = out[i];
      d.dilation = std::int32_t(p.dilation[i]);
      if (i > start) d.skip_keys = std::int32_t(p.segment_length[i - 1] / p.dilation[i]);
      for (int c = i + 1; c < end; ++c) d.ratio[d.weights++] = std::int32_t(p.dilation[c] / p.dilation[i]);
    }
    if (end == start + 1) out[start] = DedupParams{};  // a chain of one: today's kernel
    start = end;
  }
}

// How many chain branches keep (kept row `row`, kept key `key`) of head h's
// segment of this branch, this one included. row and key may be taken mod 8.
// The ratios are powers of two, so the classes are bit masks: the kernel
// pays one division (h / r_i) per tile and a few logic operations.
DILATED_INLINE int dedup_multiplicity(const DedupParams& d, std::int64_t h, int row, int key) {
  const int cls = int(std::int32_t(h) / d.dilation);  // h < 2^31 (the plan's heads)
  int m = 1;
  for (int c = 0; c < kDedupMaxWeights; ++c) {
    const int mask = d.ratio[c] - 1;  // 2, 4, 8 -> 1, 3, 7; absent (0) -> never counts
    m += (c < d.weights && ((row ^ cls) & mask) == 0 && ((key ^ cls) & mask) == 0) ? 1 : 0;
  }
  return m;
}

// The keys a query tile of a skipping branch visits: [0, k_end) without
// [*skip_begin, *skip_end), in *blocks blocks of `block` keys (block |
// skip_keys; a tile starting at q_begin lies in one of the previous branch's
// segments).
DILATED_INLINE void dedup_skip(std::int32_t skip_keys, std::int32_t q_begin, std::int32_t k_end, int block,
                               std::int32_t* skip_begin, std::int32_t* skip_end, int* blocks) {
  const std::int32_t b = q_begin / skip_keys * skip_keys;
  const std::int32_t e = b + skip_keys < k_end ? b + skip_keys : k_end;
  *skip_begin = b;
  *skip_end = e;
  *blocks = int(b / block + (e < k_end ? (k_end - e + block - 1) / block : 0));
}

// First key of the tile's kb-th visited block.
DILATED_INLINE std::int32_t dedup_block_key(int kb, int block, std::int32_t skip_begin, std::int32_t skip_end) {
  const std::int32_t key = std::int32_t(kb) * block;
  return key >= skip_begin ? key + (skip_end - skip_begin) : key;
}

}  // namespace dilated::cuda_fa3::details
