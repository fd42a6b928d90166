// cuda_fa3/details/longnet_fused_chain.hpp - a LongNet chain (longnet_dedup.hpp)
// in one launch: one online softmax per query tile over the keys of every
// chain member that keeps the tile's rows, each distinct (query, key) pair
// visited once with its multiplicity. Host and device (no CUDA needed:
// unit_tests/test_longnet_fused_chain.cpp checks it on the CPU).
//
// Why: run one launch per member, the chain's skipping members (r = 2, 4 of
// the paper's schedule) run 8-block tiles whose per-tile work (Q load, first
// S and softmax, last P V, a merging epilogue that reads and rewrites O and
// LSE) was 31% of their warp samples (ncu, h100-fa3-2026-11-27-fill/diag4).
// Here those keys extend the tiles of member 0 instead, and nothing merges.
//
// Layout. Member 0 (w_0, r_0) keeps, in each w_0-long *unit*, rows
// j = 0 .. w_0 / r_0 - 1 at positions unit start + o_0 + r_0 j (o_0 = h mod
// r_0). Let r_L be the last member's dilation and R = r_L / r_0. A query
// tile holds 128 rows of one *class* c (j = c mod R) of one unit: positions
// unit start + o_0 + r_0 c + r_L i, i.e. rows of the TMA descriptor of
// residue o_0 + r_0 c and stride r_L (forward_params.hpp: one descriptor per
// residue). Key blocks are cut the same way: Block keys of one class of one
// unit. Member m keeps the rows j = cls_m mod ratio_m, cls_m = (h / r_0) mod
// ratio_m, ratio_m = r_m / r_0 (longnet_dedup.hpp), so a class is either
// kept by m or not, and the members keeping class c form a prefix.
//
// A tile of class c walks, for each member m keeping c: the units of its
// w_m-segment outside member m-1's w_{m-1}-segment, and in each the key
// classes member m keeps. The pair (query of class c, key of class c') is
// then visited once, by the first member whose segment holds the key, and
// counts 1 + #{later members m' keeping c and c'} times: one weight per key
// block, added as log2(m) to the exp2 argument (softmax.cuh).
//
// Eligible (fused_chain_plan): a chain of longnet_dedup_plan with
// w_0 % (128 r_L) == 0 (whole tiles and blocks per class and unit),
// seq_len % w_L == 0 (every member's segments whole), r_L <= 16
// descriptors, and 32-bit tile arithmetic.
#pragma once

#include <cstdint>

#include "cuda_fa3/details/fast_decode.hpp"
#include "cuda_fa3/details/longnet_dedup.hpp"
#include "dilated/host_device.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

inline constexpr int kFusedMaxMembers = kDedupMaxWeights + 1;
inline constexpr int kFusedTileRows = 128;
inline constexpr int kFusedMaxPhases = 16;  // forward_params.hpp kMaxPhases

struct FusedChainParams {
  std::int32_t members = 0;       // 0: no fused chain
  std::int32_t first_branch = 0;  // member 0's branch
  std::int32_t unit = 0;          // w_0
  std::int32_t dilation0 = 1;     // r_0
  std::int32_t classes = 1;       // R = r_L / r_0
  std::int32_t class_rows = 0;    // w_0 / r_L: rows (and keys) of one class in one unit
  std::int32_t units = 0;         // seq_len / w_0
  std::int32_t tiles_per_unit = 0;
  std::int32_t span[kFusedMaxMembers] = {};      // w_m / w_0 (span[0] = 1)
  std::int32_t ratio[kFusedMaxMembers] = {};     // r_m / r_0 (ratio[0] = 1)
  std::int32_t kclasses[kFusedMaxMembers] = {};  // key classes member m keeps: R / ratio_m
  // The divisions of a tile start as multiply-shifts (fast_decode.hpp): the
  // consumers decode each tile on their path between tiles (with 32-bit
  // divisions there, a tile start cost ~20 instructions per division).
  FastDiv div_tiles, div_units, div_heads, div_per_class, div_d0;
  FastDiv div_span[kFusedMaxMembers];
  DILATED_INLINE bool active() const { return members > 0; }
};

// The fused form of the chain whose first member is branch `first` (dedup:
// longnet_dedup_plan's result), or an inactive one when it does not apply.
inline FusedChainParams fused_chain_plan(const PatternParams& p, const DedupParams* dedup, int first,
                                         std::int64_t batch, std::int64_t heads) {
  FusedChainParams f{};
  const DedupParams& d = dedup[first];
  if (d.skip_keys != 0 || d.weights == 0 || p.head_mode != 0) return f;  // not a chain's first member
  const int members = 1 + d.weights;
  if (members > kFusedMaxMembers || first + members > p.num_branches) return f;
  const std::int64_t w0 = p.segment_length[first], r0 = p.dilation[first];
  const std::int64_t rl = p.dilation[first + members - 1], wl = p.segment_length[first + members - 1];
  if (rl > kFusedMaxPhases || w0 % (kFusedTileRows * rl) != 0 || p.seq_len % wl != 0) return f;
  const std::int64_t units = p.seq_len / w0, tiles_per_unit = w0 / r0 / kFusedTileRows;
  constexpr std::int64_t k31 = std::int64_t(1) << 31;
  if (p.seq_len + rl >= k31 || batch * heads * units * tiles_per_unit >= k31) return f;
  f.members = members;
  f.first_branch = first;
  f.unit = std::int32_t(w0);
  f.dilation0 = std::int32_t(r0);
  f.classes = std::int32_t(rl / r0);
  f.class_rows = std::int32_t(w0 / rl);
  f.units = std::int32_t(units);
  f.tiles_per_unit = std::int32_t(tiles_per_unit);
  for (int m = 0; m < members; ++m) {
    f.span[m] = std::int32_t(p.segment_length[first + m] / w0);
    f.ratio[m] = std::int32_t(p.dilation[first + m] / r0);
    f.kclasses[m] = f.classes / f.ratio[m];
    f.div_span[m] = FastDiv::make(std::uint32_t(f.span[m]));
  }
  f.div_tiles = FastDiv::make(std::uint32_t(f.tiles_per_unit));
  f.div_units = FastDiv::make(std::uint32_t(f.units));
  f.div_heads = FastDiv::make(std::uint32_t(heads));
  f.div_per_class = FastDiv::make(std::uint32_t(f.class_rows / kFusedTileRows));
  f.div_d0 = FastDiv::make(std::uint32_t(r0));
  return f;
}

// Where a tile index lies: tiles run unit by unit (class-major inside a
// unit), units inside a head, heads inside a batch entry, so neighbouring
// CTAs share a unit's keys in L2.
struct FusedTileCoords {
  std::int32_t b, h, unit, cls, sub;  // sub: 128-row tile of the class in the unit
};

// idx < 2^31 (fused_chain_plan).
DILATED_INLINE FusedTileCoords fused_tile_coords(const FusedChainParams& f, std::uint32_t idx) {
  FusedTileCoords c;
  const std::uint32_t g = f.div_tiles.div(idx), in_unit = idx - g * std::uint32_t(f.tiles_per_unit);
  const std::uint32_t bh = f.div_units.div(g);
  c.unit = std::int32_t(g - bh * std::uint32_t(f.units));
  const std::uint32_t b = f.div_heads.div(bh);
  c.h = std::int32_t(bh - b * f.div_heads.d);
  c.b = std::int32_t(b);
  const std::uint32_t cls = f.div_per_class.div(in_unit);
  c.cls = std::int32_t(cls);
  c.sub = std::int32_t(in_unit - cls * f.div_per_class.d);
  return c;
}

// h / r_0: the head's classes (member m keeps rows j = hc mod ratio_m).
DILATED_INLINE std::int32_t fused_head_class(const FusedChainParams& f, std::int32_t h) {
  return std::int32_t(f.div_d0.div(std::uint32_t(h)));
}

// The class of member m's rows for a head of class hc (which j mod ratio_m it keeps).
DILATED_INLINE std::int32_t fused_member_class(const FusedChainParams& f, int m, std::int32_t hc) {
  return hc & (f.ratio[m] - 1);  // ratios are 1, 2, 4 or 8
}

// Members keeping query class cls: a prefix of the chain.
DILATED_INLINE int fused_members_of(const FusedChainParams& f, std::int32_t hc, std::int32_t cls) {
  int n = 0;
  while (n < f.members && ((cls ^ hc) & (f.ratio[n] - 1)) == 0) ++n;
  return n;
}

// Key blocks of `block` keys that member m contributes to a tile it keeps.
DILATED_INLINE std::int32_t fused_member_blocks(const FusedChainParams& f, int m, int block) {
  const std::int32_t units = f.span[m] - (m > 0 ? f.span[m - 1] : 0);
  return units * f.kclasses[m] * (f.class_rows / block);
}

// hc: fused_head_class of the tile's head.
DILATED_INLINE std::int32_t fused_tile_blocks(const FusedChainParams& f, std::int32_t hc, std::int32_t cls, int block) {
  const int n = fused_members_of(f, hc, cls);
  std::int32_t blocks = 0;
  for (int m = 0; m < n; ++m) blocks += fused_member_blocks(f, m, block);
  return blocks;
}

// How many chain members keep (query class cls, key class kcls), counting
// from member m on (m keeps both); hc: the head's class.
DILATED_INLINE int fused_multiplicity(const FusedChainParams& f, int m, std::int32_t hc, std::int32_t cls,
                                      std::int32_t kcls) {
  int n = 1;
  for (int c = m + 1; c < f.members; ++c) {
    const std::int32_t mask = f.ratio[c] - 1;
    n += (((cls ^ hc) & mask) == 0 && ((kcls ^ hc) & mask) == 0) ? 1 : 0;
  }
  return n;
}

// One key block of a fused tile: the unit and class it reads, and its weight.
struct FusedBlock {
  std::int32_t unit, kcls, first;  // first: first key of the block within the class's rows of the unit
  int multiplicity;
};

// log2 of a multiplicity 1..4 (the exp2 argument's offset, softmax.cuh).
DILATED_INLINE float fused_log2(int m) { return m == 1 ? 0.f : m == 2 ? 1.f : m == 3 ? 1.5849625007211562f : 2.f; }

// The blocks of one tile in the order the producer loads and the consumers
// weigh them, advanced exactly once per block by each thread that uses it.
// Counters only (no divisions per block): the member's first unit of its
// segment and the earlier member's, updated at each member change; the
// weight only changes with the key class, so it is recomputed there
// (`multiplicity`), not per block on the consumers' softmax path.
struct FusedWalker {
  const FusedChainParams* f;
  std::int32_t hc, cls, unit;           // the tile's head class (fused_head_class), row class and unit
  int block;                            // keys per block
  std::int32_t blocks_per_class;        // class_rows / block
  int m = 0;                            // current member
  std::int32_t u = 0, z = 0, beta = 0;  // unit, key class and block counters inside the member
  std::int32_t seg_begin = 0, prev_begin = 0, prev_span = 0, kcls_base = 0, kcls_step = 1, units = 0, kclasses = 1;
  int multiplicity = 1;  // of the current block
  float log2_m = 0.f;    // fused_log2(multiplicity)

  DILATED_INLINE FusedWalker(const FusedChainParams& params, std::int32_t head_class, std::int32_t row_class,
                             std::int32_t tile_unit, int keys_per_block)
      : f(&params),
        hc(head_class),
        cls(row_class),
        unit(tile_unit),
        block(keys_per_block),
        blocks_per_class(params.class_rows / keys_per_block) {
    enter(0);
  }
  DILATED_INLINE void weigh(std::int32_t kcls) {
    multiplicity = fused_multiplicity(*f, m, hc, cls, kcls);
    log2_m = fused_log2(multiplicity);
  }
  DILATED_INLINE void enter(int member) {
    m = member;
    u = z = beta = 0;
    if (m >= f->members) return;
    const std::int32_t span = f->span[m];
    seg_begin = std::int32_t(f->div_span[m].div(std::uint32_t(unit))) * span;
    prev_span = m > 0 ? f->span[m - 1] : 0;
    prev_begin = m > 0 ? std::int32_t(f->div_span[m - 1].div(std::uint32_t(unit))) * prev_span : 0;
    units = span - prev_span;
    kcls_base = fused_member_class(*f, m, hc);
    kcls_step = f->ratio[m];
    kclasses = f->kclasses[m];
    weigh(kcls_base);
  }
  DILATED_INLINE FusedBlock current() const {
    std::int32_t uu = seg_begin + u;
    if (m > 0 && uu >= prev_begin) uu += prev_span;  // member m-1 counted its own segment
    const std::int32_t kcls = kcls_base + kcls_step * z;
    return FusedBlock{uu, kcls, beta * block, multiplicity};
  }
  // Per block a compare (the consumers run this on their softmax path; a
  // division here and the weight per block cost 5.5% of LongNet 1M d128,
  // H100, h100-fa3-2026-11-27-fused/diag2).
  DILATED_INLINE void advance() {
    if (++beta < blocks_per_class) return;
    beta = 0;
    if (++z < kclasses) {
      weigh(kcls_base + kcls_step * z);
      return;
    }
    z = 0;
    if (++u < units) {
      weigh(kcls_base);
      return;
    }
    enter(m + 1);
  }
};

}  // namespace dilated::cuda_fa3::details
