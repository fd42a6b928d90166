// The cuda_fa3 forward's tile decode without 64-bit divisions
// (src/cuda_fa3/details/fast_decode.hpp), on the CPU: the multiply-shift
// division against / and %, and the tile coordinates against decode_tile's
// 64-bit arithmetic (tile_scheduler.cuh) for every tile of small launches
// and a stride of the LongNet 1M launches. No GPU needed, so CI runs it;
// test_fa3_forward checks the kernels on an H100.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_fa3/details/fast_decode.hpp"
#include "dilated/config.hpp"
#include "dilated/pattern.hpp"

namespace {

namespace d = dilated::cuda_fa3::details;

TEST(FastDiv, MatchesDivisionAndRemainder) {
  const std::uint32_t top = (std::uint32_t(1) << 31) - 1;
  std::vector<std::uint32_t> divisors = {1, 2, 3, 5, 6, 7, 12, 16, 100, 127, 128, 129, 1000, 4095, 4096, 65535,
                                         65536, 131071, 1u << 20, (1u << 30) - 1, 1u << 30, (1u << 30) + 1, top};
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) divisors.push_back(std::uint32_t(1 + rng() % top));
  for (std::uint32_t dv : divisors) {
    const d::FastDiv f = d::FastDiv::make(dv);
    std::vector<std::uint32_t> ns = {0, 1, 2, dv - 1, dv, dv + 1, 2 * dv - 1, 2 * dv, top, top - 1, top - dv + 1};
    for (int k = 0; k < 2000; ++k) ns.push_back(std::uint32_t(rng() % (std::uint64_t(top) + 1)));
    for (int k = 1; k < 64; ++k) ns.push_back(std::uint32_t(std::uint64_t(k) * dv % (std::uint64_t(top) + 1)));
    for (std::uint32_t n : ns) {
      if (n > top) continue;  // the contract: dividends below 2^31
      ASSERT_EQ(f.div(n), n / dv) << n << " / " << dv;
      ASSERT_EQ(f.mod(n), n % dv) << n << " % " << dv;
    }
  }
}

// decode_tile's 64-bit arithmetic (whole-sequence launch, LongNet mode).
d::TileCoords reference(const dilated::PatternParams& p, int i, std::int64_t idx, bool causal, std::int64_t batch,
                        std::int64_t heads, std::int64_t tiles, std::int64_t segments) {
  d::TileCoords c;
  const std::int64_t groups = batch * heads * segments;
  std::int64_t g;
  if (causal) {
    c.qt = tiles - 1 - idx / groups;
    g = idx % groups;
  } else {
    c.qt = idx % tiles;
    g = idx / tiles;
  }
  c.segment = g % segments;
  c.h = int((g / segments) % heads);
  c.b = int(g / (segments * heads));
  c.offset = p.offset(c.h, i);
  c.kept = p.kept_count(i, c.segment, c.offset);
  c.first = p.position(i, c.segment, c.offset, 0);
  return c;
}

void check_launches(std::vector<dilated::Branch> branches, std::int64_t batch, std::int64_t n,
                    std::int64_t heads, std::int64_t stride) {
  dilated::AttentionConfig config;
  config.branches = std::move(branches);
  config.allow_partial_segments = true;
  const dilated::PatternParams p = dilated::make_pattern(config, {batch, n, heads, 128});
  for (int i = 0; i < p.num_branches; ++i)
    for (bool causal : {false, true}) {
      SCOPED_TRACE("branch " + std::to_string(i) + (causal ? " causal" : ""));
      // plan.cu's launch numbers for a whole-sequence branch (128-row tiles).
      const std::int64_t segments = p.num_segments(i);
      const std::int64_t tiles = (p.max_kept_in_window(i, n) + 127) / 128;
      d::TileDivisors dv;
      dv.tiles = d::FastDiv::make(std::uint32_t(tiles));
      dv.groups = d::FastDiv::make(std::uint32_t(batch * heads * segments));
      dv.segments = d::FastDiv::make(std::uint32_t(segments));
      dv.heads = d::FastDiv::make(std::uint32_t(heads));
      dv.dilation = d::FastDiv::make(std::uint32_t(p.dilation[i]));
      dv.enabled = true;
      const std::int64_t total = batch * heads * segments * tiles;
      for (std::int64_t idx = 0; idx < total; idx += (idx % 7 == 0 ? 1 : stride)) {
        const d::TileCoords want = reference(p, i, idx, causal, batch, heads, tiles, segments);
        const d::TileCoords got = d::fast_tile_coords(dv, std::uint32_t(idx), causal, tiles, 0,
                                                      p.segment_length[i], p.seq_len);
        ASSERT_EQ(got.qt, want.qt) << idx;
        ASSERT_EQ(got.segment, want.segment) << idx;
        ASSERT_EQ(got.h, want.h) << idx;
        ASSERT_EQ(got.b, want.b) << idx;
        ASSERT_EQ(got.offset, want.offset) << idx;
        ASSERT_EQ(got.kept, want.kept) << idx;
        ASSERT_EQ(got.first, want.first) << idx;
      }
    }
}

TEST(FastTileCoords, MatchDecodeTileOnSmallLaunches) {
  check_launches({{256, 1}, {512, 2}, {1024, 4}}, 2, 2048, 4, 1);
  check_launches({{384, 5}, {768, 6}}, 1, 1536, 6, 1);         // w % r != 0
  check_launches({{300, 1}, {1000, 3}}, 3, 2300, 5, 1);        // partial last segments
  check_launches({{128, 1}, {512, 16}}, 1, 1024, 17, 1);       // r = 16, heads > r
}

TEST(FastTileCoords, MatchDecodeTileOnLongNet1M) {
  // The schedule at N = 1M, 16 heads: 131072 tiles in branch 0.
  check_launches({{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}}, 1, 1 << 20, 16, 97);
  check_launches({{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}}, 2, 1 << 19, 16, 97);
}

}  // namespace
