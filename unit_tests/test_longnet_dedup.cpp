// The LongNet chain schedule of the cuda_fa3 forward (src/cuda_fa3/details/
// longnet_dedup.hpp), on the CPU: walking every branch's query tiles and key
// blocks as the kernels do (skipped runs, multiplicity weights) counts every
// (query, key) pair of every head exactly as often as the branches of the
// pattern keep it (the float64 reference's rule, dilated/pattern.hpp). No
// GPU needed, so CI runs it; the kernels' results are checked against the
// reference by test_fa3_forward on an H100.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "cuda_fa3/details/longnet_dedup.hpp"
#include "dilated/pattern.hpp"
#include "longnet_chain_support.hpp"

namespace {

using dilated::Branch;
using dilated::PatternParams;
using longnet_chain_test::pattern;
using longnet_chain_test::plan;
namespace d = dilated::cuda_fa3::details;

// count[q * n + k] for head h: the kernels' walk (weights included) minus the
// pattern's count. tile_rows: the query tile of branches that do not skip
// (192 at head_dim 64); skipping branches run 128-row tiles. block: keys per
// block. Returns the mismatching pairs; *visited / *kept: key visits and kept
// pairs.
std::int64_t mismatches(const PatternParams& p, const std::vector<d::DedupParams>& dd, std::int64_t h, int tile_rows,
                        int block, std::int64_t* visited, std::int64_t* kept) {
  const std::int64_t n = p.seq_len;
  std::int64_t mod8_differs = 0;
  std::vector<int> count(std::size_t(n * n), 0);
  for (int i = 0; i < p.num_branches; ++i) {
    const std::int64_t o = p.offset(h, i);
    for (std::int64_t s = 0; s < p.num_segments(i); ++s) {
      const std::int64_t kc = p.kept_count(i, s, o);
      for (std::int64_t a = 0; a < kc; ++a)  // the reference: every kept pair once per branch
        for (std::int64_t b = 0; b < kc; ++b) {
          --count[std::size_t(p.position(i, s, o, a) * n + p.position(i, s, o, b))];
          ++*kept;
        }
      const d::DedupParams& dp = dd[std::size_t(i)];
      const int rows = dp.skip_keys > 0 ? d::kDedupTileRows : tile_rows;
      for (std::int64_t q0 = 0; q0 < kc; q0 += rows) {  // the kernel's tiles (decode_tile, dedup_tile)
        std::int32_t sb = 0, se = 0;
        int blocks = int((kc + block - 1) / block);
        if (dp.skip_keys > 0) d::dedup_skip(dp.skip_keys, std::int32_t(q0), std::int32_t(kc), block, &sb, &se, &blocks);
        for (int kb = 0; kb < blocks; ++kb) {
          const std::int64_t k0 = dp.skip_keys > 0 ? d::dedup_block_key(kb, block, sb, se) : std::int64_t(kb) * block;
          for (std::int64_t j = q0; j < std::min(q0 + rows, kc); ++j)
            for (std::int64_t key = k0; key < std::min<std::int64_t>(k0 + block, kc); ++key) {
              // The kernel knows row and key only mod 8 (the accumulator
              // layout).
              const int m = d::dedup_multiplicity(dp, h, int(j % 8), int(key % 8));
              if (m != d::dedup_multiplicity(dp, h, int(j), int(key))) ++mod8_differs;
              count[std::size_t(p.position(i, s, o, j) * n + p.position(i, s, o, key))] += m;
              ++*visited;
            }
        }
      }
    }
  }
  EXPECT_EQ(mod8_differs, 0);
  return std::int64_t(count.size()) - std::count(count.begin(), count.end(), 0);
}

struct Shape {
  std::string name;
  std::vector<Branch> branches;
  std::int64_t n, heads;
  int chained;  // branches in chains (skipping or weighted); the rest run as
                // before
};

TEST(LongNetDedup, WalkCountsEveryPairAsTheBranches) {
  const std::vector<Shape> shapes = {
      // r = 1, 2, 4, partial last segment of every branch (test_fa3_forward
      // nested_partial_d128).
      {"r124_partial", {{256, 1}, {512, 2}, {1024, 4}}, 1700, 5, 3},
      // r = 1, 2, 4, 8: weights up to 4 in branch 0.
      {"r1248_partial", {{256, 1}, {1024, 2}, {2048, 4}, {4096, 8}}, 2348, 9, 4},
      // r_0 = 2: rows no branch keeps, heads whose classes differ per branch.
      {"r248", {{512, 2}, {1024, 4}, {2048, 8}}, 2200, 10, 3},
      // The issue's schedule scaled down: r = 6 and 12 do not nest (6 / 4).
      {"issue_like", {{256, 1}, {512, 2}, {1024, 4}, {2048, 6}, {4096, 12}}, 4096, 13, 3},
      // r = 16 / 1 is past the accumulator layout's 8: a new chain starts at r
      // = 16.
      {"ratio16", {{256, 1}, {512, 2}, {1024, 4}, {2048, 8}, {4096, 16}}, 4096, 17, 4},
      // 128 r_1 does not divide w_0 (128 % 256): no chain, today's walk.
      {"not_nested", {{128, 2}, {256, 4}, {512, 8}}, 1536, 5, 0},
  };
  for (const Shape& sh : shapes) {
    SCOPED_TRACE(sh.name);
    const PatternParams p = pattern(sh.branches, sh.n, sh.heads);
    const auto dd = plan(p);
    int chained = 0;
    for (const auto& x : dd) chained += x.active() ? 1 : 0;
    EXPECT_EQ(chained, sh.chained);
    // 128-key blocks with 128- and 192-row tiles (head_dim 128, 64), 64-key
    // blocks (head_dim 256).
    for (const auto& [tile_rows, block] : {std::pair{128, 128}, std::pair{192, 128}, std::pair{128, 64}}) {
      std::int64_t visited = 0, kept = 0;
      for (std::int64_t h = 0; h < sh.heads; ++h)
        ASSERT_EQ(mismatches(p, dd, h, tile_rows, block, &visited, &kept), 0)
            << "head " << h << ", tile rows " << tile_rows << ", block " << block;
      if (sh.chained > 0) {
        EXPECT_LT(visited, kept);  // the chain visits fewer pairs than it counts
      }
    }
  }
}

// The issue's LongNet schedule (w = 2048 .. 32768, r = 1, 2, 4, 6, 12): the
// chain is r = 1, 2, 4; branches 1 and 2 skip half of their 2048 keys a row;
// 6 and 12 run as before. A branch whose key block is not the default (176
// keys for >= 8192 keys at head_dim 128) breaks the chain there.
TEST(LongNetDedup, IssueScheduleChains) {
  const PatternParams p =
      pattern({{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}}, std::int64_t(1) << 20, 16);
  const auto dd = plan(p);
  EXPECT_EQ(dd[0].skip_keys, 0);
  ASSERT_EQ(dd[0].weights, 2);
  EXPECT_EQ(dd[0].ratio[0], 2);
  EXPECT_EQ(dd[0].ratio[1], 4);
  EXPECT_EQ(dd[1].skip_keys, 1024);
  ASSERT_EQ(dd[1].weights, 1);
  EXPECT_EQ(dd[1].ratio[0], 2);
  EXPECT_EQ(dd[2].skip_keys, 1024);
  EXPECT_EQ(dd[2].weights, 0);
  EXPECT_FALSE(dd[3].active());
  EXPECT_FALSE(dd[4].active());
  const auto broken = plan(p, {true, false, true, true, true});
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(broken[std::size_t(i)].active()) << i;
  // Multiplicities in branch 0: row class and key class both match the head's
  // class.
  EXPECT_EQ(d::dedup_multiplicity(dd[0], 0, 0, 0), 3);  // kept by r = 1, 2, 4
  EXPECT_EQ(d::dedup_multiplicity(dd[0], 0, 2, 2), 2);  // r = 1, 2
  EXPECT_EQ(d::dedup_multiplicity(dd[0], 0, 0, 1), 1);
  EXPECT_EQ(d::dedup_multiplicity(dd[0], 3, 3, 3),
            3);  // head 3: offsets 1 (r = 2), 3 (r = 4)
  EXPECT_EQ(d::dedup_multiplicity(dd[0], 3, 1, 3), 2);
}

}  // namespace
