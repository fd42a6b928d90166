// The fused LongNet chain of the cuda_fa3 forward (src/cuda_fa3/details/
// longnet_fused_chain.hpp), on the CPU: the tiles of one launch (decoded from
// their indices as the kernel does) and their key blocks (walked as the
// producer and consumers walk them, weights included) count every (query,
// key) pair of every head exactly as often as the chain's branches keep it
// (the float64 reference's rule, dilated/pattern.hpp), and every query row of
// member 0 lies in exactly one tile. No GPU needed, so CI runs it; the kernel
// itself is checked against the float64 reference by test_fa3_forward.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "cuda_fa3/details/longnet_fused_chain.hpp"
#include "dilated/pattern.hpp"
#include "longnet_chain_support.hpp"

namespace {

using dilated::Branch;
using dilated::PatternParams;
using longnet_chain_test::pattern;
namespace d = dilated::cuda_fa3::details;

// Every branch's chain entry (longnet_dedup_plan), default key blocks.
std::vector<d::DedupParams> dedup_plan(const PatternParams& p) { return longnet_chain_test::plan(p); }

struct Walked {
  std::int64_t mismatched_pairs = 0, rows_not_once = 0, visits = 0, kept = 0, bad_counts = 0;
};

// Per head: the pattern's count of every pair over the chain's members minus
// the fused walk's weighted count; and how often each member-0 row is a tile row.
Walked walk_all(const PatternParams& p, const d::FusedChainParams& f, std::int64_t heads, int block) {
  Walked w;
  const std::int64_t n = p.seq_len;
  const std::int64_t tiles = heads * std::int64_t(f.units) * f.tiles_per_unit;  // batch 1
  for (std::int64_t h = 0; h < heads; ++h) {
    std::vector<int> count(std::size_t(n * n), 0), row_seen(std::size_t(n), 0);
    for (int m = 0; m < f.members; ++m) {
      const int i = f.first_branch + m;
      const std::int64_t o = p.offset(h, i);
      for (std::int64_t s = 0; s < p.num_segments(i); ++s) {
        const std::int64_t kc = p.kept_count(i, s, o);
        for (std::int64_t a = 0; a < kc; ++a)
          for (std::int64_t b = 0; b < kc; ++b) {
            --count[std::size_t(p.position(i, s, o, a) * n + p.position(i, s, o, b))];
            ++w.kept;
          }
      }
    }
    for (std::int64_t idx = 0; idx < tiles; ++idx) {
      const d::FusedTileCoords c = d::fused_tile_coords(f, std::uint32_t(idx));
      if (c.h != h) continue;
      EXPECT_EQ(c.b, 0);
      // decode_fused_tile: rows of the descriptor of residue o_0 + r_0 c, stride r_L.
      const std::int64_t phase = h % f.dilation0 + f.dilation0 * c.cls;
      const std::int64_t stride = std::int64_t(f.dilation0) * f.classes;
      const std::int64_t first = std::int64_t(c.unit) * f.unit + phase;
      const std::int32_t hc = d::fused_head_class(f, std::int32_t(h));
      EXPECT_EQ(hc, h / f.dilation0);
      const std::int32_t blocks = d::fused_tile_blocks(f, hc, c.cls, block);
      d::FusedWalker walker(f, hc, c.cls, c.unit, block);
      for (std::int32_t kb = 0; kb < blocks; ++kb) {
        const d::FusedBlock b = walker.current();
        walker.advance();
        const std::int64_t kfirst = std::int64_t(b.unit) * f.unit + h % f.dilation0 + f.dilation0 * b.kcls;
        for (std::int64_t row = c.sub * 128; row < c.sub * 128 + 128; ++row)
          for (std::int64_t key = b.first; key < b.first + block; ++key) {
            count[std::size_t((first + row * stride) * n + kfirst + key * stride)] += b.multiplicity;
            ++w.visits;
          }
      }
      // The count and the walk end together: after the last member keeping the class.
      if (walker.m != d::fused_members_of(f, hc, c.cls)) ++w.bad_counts;
      for (std::int64_t row = c.sub * 128; row < c.sub * 128 + 128; ++row)
        ++row_seen[std::size_t(first + row * stride)];
    }
    for (int x : count) w.mismatched_pairs += x != 0 ? 1 : 0;
    const std::int64_t o0 = p.offset(h, f.first_branch);
    for (std::int64_t pos = 0; pos < n; ++pos) {
      const bool kept = (pos % f.unit) % f.dilation0 == o0;  // member 0's rows
      w.rows_not_once += row_seen[std::size_t(pos)] != (kept ? 1 : 0) ? 1 : 0;
    }
  }
  return w;
}

struct Case {
  std::string name;
  std::vector<Branch> branches;
  std::int64_t n, heads;
  int first, members;  // the fused chain expected (members 0: none)
};

TEST(LongNetFusedChain, WalkCountsEveryPairAsTheBranches) {
  const std::vector<Case> cases = {
      // The paper's r = 1, 2, 4 (test_fa3_forward fused_r124_*).
      {"r124", {{512, 1}, {1024, 2}, {2048, 4}}, 4096, 5, 0, 3},
      // Weights up to 4, 8 classes.
      {"r1248", {{1024, 1}, {2048, 2}, {4096, 4}, {8192, 8}}, 8192, 9, 0, 4},
      // r_0 = 2: o_0 = h mod 2, rows of the other residue in no tile.
      {"r248", {{1024, 2}, {2048, 4}, {4096, 8}}, 8192, 10, 0, 3},
      // A chain after a branch it does not nest with, then one that does not nest.
      {"after_r3", {{768, 3}, {512, 1}, {1024, 2}, {2048, 4}, {3072, 6}}, 6144, 7, 1, 3},
      // Segments that skip more than one unit: w_1 = 4 w_0.
      {"wide_steps", {{512, 1}, {2048, 2}, {4096, 4}}, 8192, 6, 0, 3},
  };
  for (const Case& cs : cases) {
    SCOPED_TRACE(cs.name);
    const PatternParams p = pattern(cs.branches, cs.n, cs.heads);
    const auto dd = dedup_plan(p);
    const d::FusedChainParams f = d::fused_chain_plan(p, dd.data(), cs.first, 1, cs.heads);
    ASSERT_EQ(f.members, cs.members);
    for (int block : {128, 64}) {  // head_dim 64/128, 256
      const Walked w = walk_all(p, f, cs.heads, block);
      EXPECT_EQ(w.mismatched_pairs, 0) << "block " << block;
      EXPECT_EQ(w.rows_not_once, 0) << "block " << block;
      EXPECT_EQ(w.bad_counts, 0) << "block " << block;
      EXPECT_LT(w.visits, w.kept);  // each distinct pair once
    }
  }
}

// Tile indices map one to one onto (batch, head, unit, class, sub-tile),
// by the multiply-shift divisions the kernel uses.
TEST(LongNetFusedChain, TileCoordinatesCoverEveryTileOnce) {
  const std::int64_t batch = 3, heads = 5;
  const PatternParams p = pattern({{512, 1}, {1024, 2}, {2048, 4}}, 8192, heads);
  const auto dd = dedup_plan(p);
  const d::FusedChainParams f = d::fused_chain_plan(p, dd.data(), 0, batch, heads);
  ASSERT_EQ(f.members, 3);
  const std::int64_t per_class = f.class_rows / 128;
  const std::int64_t tiles = batch * heads * f.units * f.tiles_per_unit;
  std::vector<int> seen(std::size_t(tiles), 0);
  for (std::int64_t idx = 0; idx < tiles; ++idx) {
    const d::FusedTileCoords c = d::fused_tile_coords(f, std::uint32_t(idx));
    ASSERT_TRUE(c.b >= 0 && c.b < batch && c.h >= 0 && c.h < heads && c.unit >= 0 && c.unit < f.units && c.cls >= 0 &&
                c.cls < f.classes && c.sub >= 0 && c.sub < per_class)
        << idx;
    ++seen[std::size_t((((c.b * heads + c.h) * f.units + c.unit) * f.classes + c.cls) * per_class + c.sub)];
  }
  for (std::int64_t i = 0; i < tiles; ++i) EXPECT_EQ(seen[std::size_t(i)], 1) << i;
}

// The paper's schedule at 1M tokens: r = 1, 2, 4 fuse (1024-row... 512 rows
// of each of 4 classes per 2048-token unit); r = 6, 12 run alone. Shapes the
// fused form refuses keep the per-member chain.
TEST(LongNetFusedChain, IssueScheduleAndRefusals) {
  const std::int64_t n = std::int64_t(1) << 20;
  const PatternParams p = pattern({{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}}, n, 16);
  const auto dd = dedup_plan(p);
  const d::FusedChainParams f = d::fused_chain_plan(p, dd.data(), 0, 1, 16);
  ASSERT_EQ(f.members, 3);
  EXPECT_EQ(f.classes, 4);
  EXPECT_EQ(f.class_rows, 512);
  EXPECT_EQ(f.units, 512);
  EXPECT_EQ(f.tiles_per_unit, 16);
  // Head 0: class 0 is kept by all three (16 + 8 + 8 blocks), class 2 by r = 1, 2, class 1 by r = 1.
  EXPECT_EQ(d::fused_tile_blocks(f, 0, 0, 128), 32);
  EXPECT_EQ(d::fused_tile_blocks(f, 0, 2, 128), 24);
  EXPECT_EQ(d::fused_tile_blocks(f, 0, 1, 128), 16);
  EXPECT_EQ(d::fused_tile_blocks(f, 5, 1, 128), 32);                   // head 5 (class 5): offsets 1 (r = 2), 1 (r = 4)
  EXPECT_FALSE(d::fused_chain_plan(p, dd.data(), 1, 1, 16).active());  // not a chain's first member
  EXPECT_FALSE(d::fused_chain_plan(p, dd.data(), 3, 1, 16).active());  // no chain
  // 128 r_L does not divide w_0 (256 % 512): whole class tiles impossible.
  const PatternParams small = pattern({{256, 1}, {512, 2}, {1024, 4}}, 2048, 4);
  const auto dd_small = dedup_plan(small);
  EXPECT_TRUE(dd_small[0].active());
  EXPECT_FALSE(d::fused_chain_plan(small, dd_small.data(), 0, 1, 4).active());
  // A partial last segment of the last member.
  const PatternParams partial = pattern({{512, 1}, {1024, 2}, {2048, 4}}, 5120, 4);
  const auto dd_partial = dedup_plan(partial);
  EXPECT_TRUE(dd_partial[0].active());
  EXPECT_FALSE(d::fused_chain_plan(partial, dd_partial.data(), 0, 1, 4).active());
}

}  // namespace
