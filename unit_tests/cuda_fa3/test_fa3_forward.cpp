// cuda_fa3 forward against the float64 reference: dense, causal, LongNet
// (w % r != 0, r = 16, unkept rows, ragged tails, partial segments), head
// groups, block-sparse (local, global + local, 90% random, rectangular
// blocks, dilated blocks; rows with no block); bf16 and fp16; head_dim 64,
// 128 and 256. Outputs are poisoned with
// NaN first, so a row the kernel forgets fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_fa3/details/causal_order.hpp"
#include "cuda_fa3/details/tile_schedule.hpp"
#include "fa3_test_support.hpp"
#include "dilated/error.hpp"
#include "dilated/reference.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::Branch;
using dilated::HeadMode;
using dilated::ProblemShape;
using dilated::cuda_fa3::DType;
using namespace fa3test;

// Block-sparse configs (issue 4): the kernel visits only the listed 128-key
// blocks of each 128-row query tile.
AttentionConfig block_sparse(dilated::BlockSparsePattern p, bool causal) {
  AttentionConfig c;
  c.block_sparse = std::move(p);
  c.causal = causal;
  return c;
}
// A random mask keeping `density` of the blocks of each of `layouts`
// layouts; query block `empty_row` (if >= 0) lists no block at all.
dilated::BlockSparsePattern random_blocks(std::int64_t n, std::int64_t bq, std::int64_t bk,
                                          std::int64_t layouts, double density, int empty_row) {
  dilated::BlockSparsePattern p;
  p.block_q = bq;
  p.block_k = bk;
  p.layouts = layouts;
  const std::int64_t nq = p.num_q_blocks(n), nk = p.num_k_blocks(n);
  p.mask.assign(std::size_t(layouts * nq * nk), 0);
  std::mt19937_64 rng(77);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t l = 0; l < layouts; ++l)
    for (std::int64_t i = 0; i < nq; ++i)
      for (std::int64_t j = 0; j < nk; ++j)
        p.mask[std::size_t((l * nq + i) * nk + j)] = i != empty_row && u(rng) < density;
  return p;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  for (bool causal : {false, true}) {
    using BSP = dilated::BlockSparsePattern;
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({"block_sparse_local_d128" + tag, block_sparse(BSP::local_window(1024, 128, 1), causal),
                  {1, 1024, 2, 128}});
    cs.push_back({"block_sparse_global_local_d64" + tag,
                  block_sparse(BSP::global_local(1536, 128, 1, 1), causal), {1, 1536, 3, 64}});
    // ~90% sparsity, one layout per head, query block 5 empty (out 0, lse -inf).
    cs.push_back({"block_sparse_random90_d128" + tag,
                  block_sparse(random_blocks(2048, 128, 128, 2, 0.1, 5), causal), {2, 2048, 2, 128}});
    // 256-row query blocks, 128-key blocks, N not a multiple of either; d256 (64-key steps).
    cs.push_back({"block_sparse_rect_d256" + tag,
                  block_sparse(random_blocks(1000, 256, 128, 1, 0.4, -1), causal), {1, 1000, 2, 256}});
    // N not a multiple of 128 on the scheduled kernels (head_dim <= 128): a
    // tile's last key block is partial and masked from the entry's last_key;
    // query block 1 (tiles 2 and 3) empty, so the fill writes only those.
    cs.push_back({"block_sparse_ragged_d128" + tag,
                  block_sparse(random_blocks(1000, 256, 128, 2, 0.5, 1), causal), {2, 1000, 2, 128}});
    cs.push_back({"block_sparse_ragged_d64" + tag,
                  block_sparse(random_blocks(1000, 128, 128, 1, 0.5, -1), causal), {1, 1000, 3, 64}});
    cs.push_back({"block_sparse_dilated_d64" + tag,
                  block_sparse(BSP::dilated_blocks(2048, 128, 8, 2), causal), {1, 2048, 2, 64}});
    // 192 tiles (3 x 4 heads x 16), more than an H100's 132 CTAs: CTAs run
    // several tiles of the plan's schedule (tile_schedule.hpp), across
    // batches and per-head layouts, with query block 9 empty.
    cs.push_back({"block_sparse_many_tiles_d128" + tag,
                  block_sparse(random_blocks(2048, 128, 128, 4, 0.15, 9), causal), {3, 2048, 4, 128}});
    // 4 tiles of one head: small enough for compute-sanitizer racecheck, and
    // with DILATED_FA3_MAX_CTAS=1 one CTA runs them all (the cross-tile turns).
    cs.push_back({"block_sparse_tiny_d128" + tag, block_sparse(BSP::local_window(512, 128, 1), causal),
                  {1, 512, 1, 128}});
  }
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({"dense_d128" + tag, make({{1000, 1}}, causal), {2, 1000, 3, 128}});
    cs.push_back({"dense_d64" + tag, make({{384, 1}}, causal), {1, 384, 2, 64}});
    cs.push_back({"dense_d256" + tag, make({{300, 1}}, causal), {1, 300, 2, 256}});
    cs.push_back({"longnet_d128" + tag, make({{256, 1}, {512, 2}, {1024, 4}}, causal), {1, 2048, 4, 128}});
    cs.push_back({"w_mod_r_d64" + tag, make({{384, 5}, {768, 6}}, causal), {1, 1536, 6, 64}});
    cs.push_back({"r16_d64" + tag, make({{128, 1}, {512, 16}}, causal), {1, 1024, 17, 64}});
    cs.push_back({"unkept_rows_d128" + tag, make({{256, 2}, {512, 4}}, causal), {2, 512, 3, 128}});
    cs.push_back({"head_groups_d128" + tag,
                  make({{128, 1}, {256, 2}, {512, 4}}, causal, HeadMode::HeadGroups), {1, 512, 7, 128}});
    cs.push_back({"partial_segments_d64" + tag, make({{256, 1}, {512, 3}}, causal, HeadMode::LongNet, true),
                  {1, 700, 3, 64}});
    cs.push_back({"longnet5_d256" + tag, make({{64, 1}, {128, 2}, {256, 4}, {512, 6}, {1024, 12}}, causal),
                  {1, 1024, 3, 256}});
  }
  // Nested LongNet branches (r_b | r_b+1, w_b | w_b+1; the shapes a fused
  // multi-branch schedule would take, perf_tests/results/h100-fa3-2026-11-27-sched/):
  // a partial last segment in every branch and rows kept by 1..3 branches;
  // r_0 = 2 (the fill, then every branch merges; rows no branch keeps);
  // nested branches followed by one that does not nest (r = 6), at d64.
  cs.push_back({"nested_partial_d128", make({{256, 1}, {512, 2}, {1024, 4}}, false, HeadMode::LongNet, true),
                {1, 1700, 5, 128}});
  cs.push_back({"nested_r0_2_d64", make({{128, 2}, {256, 4}, {512, 8}}, false), {2, 1536, 5, 64}});
  cs.push_back({"nested_then_r6_d64", make({{128, 1}, {256, 2}, {768, 6}}, false), {1, 1536, 7, 64}});
  // LongNet chains (details/longnet_dedup.hpp): nested branches skip the
  // keys of the previous branch's segment, which counts them with weight m
  // (up to 4 with r = 1, 2, 4, 8); partial last segments; head_dim 64 (192-row
  // tiles weighting, 128-row tiles skipping), 128, 256 (64-key blocks);
  // r_0 = 2 (rows no branch keeps, offsets whose classes differ per branch).
  cs.push_back({"chain_r1248_partial_d64",
                make({{256, 1}, {512, 2}, {1024, 4}, {2048, 8}}, false, HeadMode::LongNet, true), {1, 2748, 9, 64}});
  cs.push_back({"chain_r1248_d128", make({{256, 1}, {512, 2}, {1024, 4}, {2048, 8}}, false), {1, 2048, 9, 128}});
  cs.push_back({"chain_r124_partial_d64", make({{256, 1}, {512, 2}, {1024, 4}}, false, HeadMode::LongNet, true),
                {2, 1300, 5, 64}});
  cs.push_back({"chain_r124_partial_d256", make({{256, 1}, {512, 2}, {1024, 4}}, false, HeadMode::LongNet, true),
                {1, 1300, 5, 256}});
  cs.push_back({"chain_r248_d128", make({{512, 2}, {1024, 4}, {2048, 8}}, false, HeadMode::LongNet, true),
                {1, 2200, 10, 128}});
  // Fused LongNet chains (details/longnet_fused_chain.hpp): a chain whose
  // w_0 is a multiple of 128 r_L and whose segments are whole runs as one
  // launch of class tiles: r = 1, 2, 4 at every head_dim and two batch
  // entries; r = 1, 2, 4, 8 (weights up to 4); r_0 = 2 (the fill, then a
  // merging fused launch); a later branch merging on top (r = 6); a chain
  // after a branch it does not nest with (fused launch at branch 1, merging).
  cs.push_back({"fused_r124_d128", make({{512, 1}, {1024, 2}, {2048, 4}}, false), {2, 4096, 5, 128}});
  cs.push_back({"fused_r124_d64", make({{512, 1}, {1024, 2}, {2048, 4}}, false), {1, 4096, 5, 64}});
  cs.push_back({"fused_r124_d256", make({{512, 1}, {1024, 2}, {2048, 4}}, false), {1, 4096, 3, 256}});
  cs.push_back({"fused_r1248_d64", make({{1024, 1}, {2048, 2}, {4096, 4}, {8192, 8}}, false), {1, 8192, 9, 64}});
  cs.push_back({"fused_r248_d128", make({{1024, 2}, {2048, 4}, {4096, 8}}, false), {1, 8192, 10, 128}});
  cs.push_back({"fused_then_r6_d128", make({{512, 1}, {1024, 2}, {2048, 4}, {3072, 6}}, false), {1, 6144, 7, 128}});
  cs.push_back({"fused_after_r3_d64", make({{768, 3}, {512, 1}, {1024, 2}, {2048, 4}}, false), {1, 6144, 7, 64}});
  // Causal, more query tiles (160-192) than an H100 has SMs (132): the
  // persistent causal grid (forward_kernel.cuh produce_dynamic_tiles) runs
  // one or two tiles per CTA from its tile counter; the smaller causal cases
  // above fit one tile per CTA. (DILATED_FA3_CAUSAL_CTAS=n caps that grid,
  // so every causal case can run many tiles per CTA.)
  cs.push_back({"causal_many_tiles_d128", make({{512, 1}}, true), {1, 512, 48, 128}});
  cs.push_back({"causal_many_tiles_d256", make({{256, 1}}, true), {1, 256, 80, 256}});
  cs.push_back({"causal_many_tiles_longnet_d128", make({{256, 1}, {512, 2}, {1024, 4}}, true), {1, 2048, 12, 128}});
  // >= 8192 keys, head_dim 128: the 176-key blocks (ragged tail); causal:
  // blocks straddling the diagonal, ragged last query tile.
  cs.push_back({"wide_blocks_d128", make({{8300, 1}}, false), {1, 8300, 1, 128}});
  cs.push_back({"wide_blocks_d128_causal", make({{8300, 1}}, true), {1, 8300, 1, 128}});
  // Dropout: the library's counter-based mask, the same as the reference's.
  for (bool causal : {false, true}) {
    AttentionConfig d = make({{256, 1}, {512, 2}, {1024, 4}}, causal);
    d.dropout_p = 0.15;
    d.dropout_seed = 1234;
    cs.push_back({std::string("dropout_longnet_d128") + (causal ? "_causal" : ""), d, {1, 1024, 3, 128}});
  }
  return cs;
}

class Fa3Forward : public ::testing::TestWithParam<std::tuple<Case, DType>> {};

TEST_P(Fa3Forward, MatchesFloat64Reference) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const Case& c = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  const ProblemShape& s = c.shape;
  dilated::cuda_fa3::Plan plan(c.config, s, dt);
  ASSERT_TRUE(plan.support().ok) << plan.support().reason;

  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  std::mt19937_64 rng(0x5eed0000 + n);
  std::vector<double> q, k, v;
  const auto qb = random_tensor(n, dt, rng, &q), kb = random_tensor(n, dt, rng, &k),
             vb = random_tensor(n, dt, rng, &v);
  DeviceBuffer<std::uint16_t> dq(n), dk(n), dv(n), dout(n);
  DeviceBuffer<float> dlse(nl);
  dq.upload(qb);
  dk.upload(kb);
  dv.upload(vb);
  ASSERT_EQ(cudaMemset(dout.ptr, 0xFF, n * 2), cudaSuccess);  // NaN in both 16-bit types
  ASSERT_EQ(cudaMemset(dlse.ptr, 0xFF, nl * 4), cudaSuccess);

  const std::int64_t sb = s.seq_len * s.heads * s.head_dim, ss = s.heads * s.head_dim, sh = s.head_dim;
  using dilated::cuda_fa3::LseTensor;
  using dilated::cuda_fa3::MutableTensor;
  using dilated::cuda_fa3::Tensor;
  plan.forward(Tensor{dq.ptr, sb, ss, sh, 1}, Tensor{dk.ptr, sb, ss, sh, 1}, Tensor{dv.ptr, sb, ss, sh, 1},
               MutableTensor{dout.ptr, sb, ss, sh, 1},
               LseTensor{dlse.ptr, s.heads * s.seq_len, s.seq_len, 1}, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = dout.download();
  const auto got_lse = dlse.download();

  std::vector<double> want(n), want_lse(nl);
  dilated::reference::forward(c.config, s, q.data(), k.data(), v.data(), want.data(), want_lse.data());
  const Tol tol = tolerance(dt);
  double worst = 0, worst_lse = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double g = from_half_bits(got[i], dt);
    const double e = std::abs(g - want[i]);
    if (!(e <= tol.out)) ++bad;
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  for (std::size_t i = 0; i < nl; ++i) {
    double e;
    if (std::isinf(want_lse[i])) e = (std::isinf(got_lse[i]) && got_lse[i] < 0) ? 0 : INFINITY;
    else e = std::abs(got_lse[i] - want_lse[i]) / std::max(1.0, std::abs(want_lse[i]));
    if (!(e <= tol.lse)) ++bad;
    if (!(e <= worst_lse)) worst_lse = std::isnan(e) ? INFINITY : e;
  }
  EXPECT_EQ(bad, 0u) << "max |out err| " << worst << " (tol " << tol.out << "), max lse err " << worst_lse
                     << " (tol " << tol.lse << ")";
  RecordProperty("max_out_error", std::to_string(worst));
}

// Block-sparse shapes the kernels cannot tile are reported, so AutoPlan can
// fall back (the backward's block-sparse cases: test_fa3_block_sparse.cpp).
TEST(Fa3BlockSparseSupport, UnsupportedShapesSayWhy) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 1024, 2, 128};
  auto support = [&](const AttentionConfig& c) {
    return dilated::cuda_fa3::query_support(c, s, DType::bf16, -1);
  };
  const auto ok = support(block_sparse(dilated::BlockSparsePattern::local_window(1024, 128, 1), false));
  EXPECT_TRUE(ok.ok) << ok.reason;
  const auto small = support(block_sparse(dilated::BlockSparsePattern::local_window(1024, 64, 1), false));
  EXPECT_FALSE(small.ok);
  EXPECT_NE(small.reason.find("multiples of 128"), std::string::npos) << small.reason;
  AttentionConfig drop = block_sparse(dilated::BlockSparsePattern::local_window(1024, 128, 1), false);
  drop.dropout_p = 0.1;
  const auto dropped = support(drop);
  EXPECT_FALSE(dropped.ok);
  EXPECT_NE(dropped.reason.find("dropout"), std::string::npos) << dropped.reason;
  dilated::cuda_fa3::Plan plan(block_sparse(dilated::BlockSparsePattern::local_window(1024, 128, 1), false),
                               s, DType::bf16);
  EXPECT_TRUE(plan.support().ok);
  EXPECT_TRUE(plan.backward_support().ok) << plan.backward_support().reason;  // v1 walks the rule too
}

// One forward call of `plan` on tensors stored [b, s, h, d] (or, heads_major,
// [b, h, s, d]) in the given buffers, with fresh random inputs from `seed`;
// returns how many outputs and LSEs miss the float64 reference (out poisoned).
std::size_t wrong_outputs(const dilated::cuda_fa3::Plan& plan, DType dt, bool heads_major,
                          DeviceBuffer<std::uint16_t>& bq, DeviceBuffer<std::uint16_t>& bk,
                          DeviceBuffer<std::uint16_t>& bv, DeviceBuffer<std::uint16_t>& bo, DeviceBuffer<float>& bl,
                          std::uint64_t seed) {
  const ProblemShape& s = plan.shape();
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  const std::int64_t sb = s.seq_len * s.heads * s.head_dim;
  const std::int64_t ss = heads_major ? s.head_dim : s.heads * s.head_dim;
  const std::int64_t sh = heads_major ? s.seq_len * s.head_dim : s.head_dim;
  // Element i of the canonical [b, s, h, d] order sits at place(i) in the buffers.
  auto place = [&](std::size_t i) {
    const std::int64_t d = std::int64_t(i) % s.head_dim, h = (std::int64_t(i) / s.head_dim) % s.heads,
                       t = (std::int64_t(i) / (s.head_dim * s.heads)) % s.seq_len,
                       b = std::int64_t(i) / (s.head_dim * s.heads * s.seq_len);
    return std::size_t(b * sb + t * ss + h * sh + d);
  };
  std::mt19937_64 rng(seed);
  std::vector<double> q, k, v;
  const std::vector<std::uint16_t> qc = random_tensor(n, dt, rng, &q), kc = random_tensor(n, dt, rng, &k),
                                   vc = random_tensor(n, dt, rng, &v);
  std::vector<std::uint16_t> qs(n), ks(n), vs(n);
  for (std::size_t i = 0; i < n; ++i) {
    qs[place(i)] = qc[i];
    ks[place(i)] = kc[i];
    vs[place(i)] = vc[i];
  }
  bq.upload(qs);
  bk.upload(ks);
  bv.upload(vs);
  EXPECT_EQ(cudaMemset(bo.ptr, 0xFF, n * 2), cudaSuccess);
  EXPECT_EQ(cudaMemset(bl.ptr, 0xFF, nl * 4), cudaSuccess);
  using dilated::cuda_fa3::LseTensor;
  using dilated::cuda_fa3::MutableTensor;
  using dilated::cuda_fa3::Tensor;
  plan.forward(Tensor{bq.ptr, sb, ss, sh, 1}, Tensor{bk.ptr, sb, ss, sh, 1}, Tensor{bv.ptr, sb, ss, sh, 1},
               MutableTensor{bo.ptr, sb, ss, sh, 1}, LseTensor{bl.ptr, s.heads * s.seq_len, s.seq_len, 1}, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = bo.download();
  const auto got_lse = bl.download();
  std::vector<double> want(n), want_lse(nl);
  dilated::reference::forward(plan.config(), s, q.data(), k.data(), v.data(), want.data(), want_lse.data());
  const Tol tol = tolerance(dt);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (!(std::abs(from_half_bits(got[place(i)], dt) - want[i]) <= tol.out)) ++bad;
  for (std::size_t i = 0; i < nl; ++i) {
    const bool ok = std::isinf(want_lse[i])
                        ? std::isinf(got_lse[i]) && got_lse[i] < 0
                        : std::abs(got_lse[i] - want_lse[i]) / std::max(1.0, std::abs(want_lse[i])) <= tol.lse;
    if (!ok) ++bad;
  }
  return bad;
}

// One plan, called in turn with new data in the same buffers, the same
// buffers under other strides ([b, h, s, d]), other buffers, and the first
// buffers again, must read what each call gives it (a plan that kept
// anything of a call's tensors, such as their TMA descriptors, would read
// the wrong rows or buffer). LongNet with dilation 2 (two descriptors per
// tensor) and a block-sparse plan.
TEST(Fa3PlanReuse, EachCallReadsItsOwnTensors) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{2, 1024, 3, 128};
  const std::vector<AttentionConfig> configs = {
      make({{256, 1}, {512, 2}}, false), block_sparse(random_blocks(1024, 128, 128, 3, 0.3, 2), false)};
  for (const AttentionConfig& config : configs) {
    SCOPED_TRACE(config.block_sparse ? "block-sparse" : "longnet");
    dilated::cuda_fa3::Plan plan(config, s, DType::bf16);
    ASSERT_TRUE(plan.support().ok) << plan.support().reason;
    const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
    const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
    DeviceBuffer<std::uint16_t> q1(n), k1(n), v1(n), o1(n), q2(n), k2(n), v2(n), o2(n);
    DeviceBuffer<float> l1(nl), l2(nl);
    EXPECT_EQ(wrong_outputs(plan, DType::bf16, false, q1, k1, v1, o1, l1, 1), 0u) << "first call";
    EXPECT_EQ(wrong_outputs(plan, DType::bf16, false, q1, k1, v1, o1, l1, 2), 0u) << "new data, same buffers";
    EXPECT_EQ(wrong_outputs(plan, DType::bf16, true, q1, k1, v1, o1, l1, 3), 0u) << "same buffers, [b, h, s, d]";
    EXPECT_EQ(wrong_outputs(plan, DType::bf16, false, q2, k2, v2, o2, l2, 4), 0u) << "other buffers";
    EXPECT_EQ(wrong_outputs(plan, DType::bf16, false, q1, k1, v1, o1, l1, 5), 0u) << "first buffers again";
  }
}

// The block-sparse forward's tile schedule (host only, no GPU): every tile
// with key blocks runs exactly once with its own count and runs, tiles
// without none, and the modelled work of the busiest CTA stays within one
// tile of the mean (list scheduling's bound) and, for bench_fa3's mask (90%
// of 128 x 128 blocks random, N = 16K, 16 heads, 132 SMs), within 3% of the
// mean (6% causal), where the stride order gave 1.14x.
TEST(Fa3TileSchedule, RunsEveryTileOnceBalanced) {
  namespace d = dilated::cuda_fa3::details;
  for (bool causal : {false, true})
    for (const auto& [layouts, batch, heads, tiles, ctas] :
         {std::tuple{1, 1, 16, 128, 132}, std::tuple{3, 2, 3, 50, 7}, std::tuple{1, 1, 2, 3, 132}}) {
      SCOPED_TRACE(std::string(causal ? "causal " : "") + std::to_string(layouts) + " layouts, " +
                   std::to_string(tiles) + " tiles, " + std::to_string(ctas) + " CTAs");
      std::mt19937_64 rng(5);
      std::vector<d::TileWork> work(std::size_t(layouts * tiles));
      for (std::size_t i = 0; i < work.size(); ++i)  // some tiles skipped; runs tell tiles apart
        work[i] = d::TileWork{std::int32_t(rng() % 4 == 0 ? 0 : rng() % 21), std::int32_t(3 * i), std::int32_t(i % 5)};
      const d::TileSchedule s = d::tile_schedule(work, layouts, batch, heads, tiles, causal, ctas);
      const std::int64_t groups = std::int64_t(batch) * heads, total = groups * tiles;
      auto at = [&](std::int64_t idx) -> const d::TileWork& {  // decode_tile's (head, query tile)
        const std::int64_t qt = causal ? tiles - 1 - idx / groups : idx % tiles;
        const std::int64_t h = (causal ? idx % groups : idx / tiles) % heads;
        return work[std::size_t((layouts == 1 ? 0 : h) * tiles + qt)];
      };
      std::int64_t active = 0, sum = 0, max_cost = 0;
      for (std::int64_t idx = 0; idx < total; ++idx)
        if (at(idx).key_blocks > 0) {
          ++active;
          sum += at(idx).key_blocks + d::kTileOverheadBlocks;
          max_cost = std::max(max_cost, at(idx).key_blocks + d::kTileOverheadBlocks);
        }
      ASSERT_EQ(s.ctas, std::min<std::int64_t>(active, ctas));
      ASSERT_EQ(s.offsets.size(), std::size_t(s.ctas + 1));
      ASSERT_EQ(s.tiles.size(), std::size_t(active));
      std::vector<int> seen(std::size_t(total), 0);
      std::int64_t busiest = 0;
      for (int c = 0; c < s.ctas; ++c) {
        ASSERT_LE(s.offsets[c], s.offsets[c + 1]);
        std::int64_t load = 0;
        for (std::int32_t j = s.offsets[c]; j < s.offsets[c + 1]; ++j) {
          const d::TileEntry& e = s.tiles[std::size_t(j)];
          ASSERT_TRUE(e.idx >= 0 && e.idx < total);
          ++seen[std::size_t(e.idx)];
          EXPECT_EQ(e.key_blocks, at(e.idx).key_blocks);
          EXPECT_EQ(e.run_begin, at(e.idx).run_begin);
          EXPECT_EQ(e.run_count, at(e.idx).run_count);
          // The host-decoded start (tile_scheduler.cuh decode_entry_tile) is decode_tile's.
          const std::int64_t g = causal ? e.idx % groups : e.idx / tiles;
          EXPECT_EQ(e.b, g / heads);
          EXPECT_EQ(e.h, g % heads);
          EXPECT_EQ(e.q_begin, 128 * (causal ? tiles - 1 - e.idx / groups : e.idx % tiles));
          load += e.key_blocks + d::kTileOverheadBlocks;
        }
        busiest = std::max(busiest, load);
      }
      for (std::int64_t idx = 0; idx < total; ++idx)
        EXPECT_EQ(seen[std::size_t(idx)], at(idx).key_blocks > 0 ? 1 : 0) << idx;
      EXPECT_LE(double(busiest), double(sum) / s.ctas + double(max_cost));
      // The fill's list (empty_tiles) holds exactly the tiles the schedule leaves out.
      std::vector<int> filled(std::size_t(groups * tiles), 0);  // by (b * heads + h) * tiles + qt
      for (const d::EmptyTile& e : d::empty_tiles(work, layouts, batch, heads, tiles)) {
        ASSERT_TRUE(e.b >= 0 && e.b < batch && e.h >= 0 && e.h < heads && e.q_begin % 128 == 0 &&
                    e.q_begin / 128 < tiles);
        ++filled[std::size_t((std::int64_t(e.b) * heads + e.h) * tiles + e.q_begin / 128)];
      }
      for (std::int64_t g = 0; g < groups; ++g)
        for (std::int64_t qt = 0; qt < tiles; ++qt)
          EXPECT_EQ(filled[std::size_t(g * tiles + qt)],
                    work[std::size_t((layouts == 1 ? 0 : g % heads) * tiles + qt)].key_blocks == 0 ? 1 : 0)
              << "group " << g << ", tile " << qt;
    }
  // bench_fa3's mask (its random_blocks(16384, 0.1)): per-tile key blocks.
  const std::int64_t nb = 128, heads = 16;
  const int sms = 132;
  std::vector<std::size_t> cells(std::size_t(nb * nb));
  for (std::size_t i = 0; i < cells.size(); ++i) cells[i] = i;
  std::mt19937_64 rng(42);
  std::shuffle(cells.begin(), cells.end(), rng);
  for (bool causal : {false, true}) {
    std::vector<d::TileWork> work(static_cast<std::size_t>(nb));
    for (std::size_t i = 0; i < std::size_t(0.1 * double(cells.size())); ++i)
      if (!causal || cells[i] % std::size_t(nb) <= cells[i] / std::size_t(nb))  // key block <= query block
        ++work[cells[i] / std::size_t(nb)].key_blocks;
    const d::TileSchedule s = d::tile_schedule(work, 1, 1, heads, nb, causal, sms);
    ASSERT_EQ(s.ctas, sms);
    std::int64_t busiest = 0, sum = 0, stride_busiest = 0;
    for (int c = 0; c < sms; ++c) {
      std::int64_t load = 0, stride = 0;
      for (std::int32_t j = s.offsets[c]; j < s.offsets[c + 1]; ++j)
        load += s.tiles[std::size_t(j)].key_blocks + d::kTileOverheadBlocks;
      for (std::int64_t idx = c; idx < heads * nb; idx += sms)
        stride += work[std::size_t(idx % nb)].key_blocks + d::kTileOverheadBlocks;
      busiest = std::max(busiest, load);
      stride_busiest = std::max(stride_busiest, stride);
      sum += load;
    }
    const double mean = double(sum) / sms;
    EXPECT_LE(busiest / mean, causal ? 1.06 : 1.03) << (causal ? "causal" : "");
    if (!causal) EXPECT_GE(stride_busiest / mean, 1.10);  // the imbalance the schedule removes is there
  }
}

// The causal persistent grid's ticket order (causal_order.hpp, host only):
// a permutation of the tile indices; ticket j lies in section j / (section *
// tiles) (its group g has g / section == that); within a section query tiles
// never get lighter-to-heavier (qt does not grow as j does); one section is
// decode_tile's own causal order (idx == j).
TEST(Fa3CausalOrder, PermutesTilesHeaviestFirstPerSection) {
  namespace d = dilated::cuda_fa3::details;
  for (const auto& [groups, tiles] : {std::pair{16u, 128u}, std::pair{12u, 16u}, std::pair{7u, 3u}, std::pair{1u, 5u}}) {
    for (std::uint32_t section = 1; section <= groups; ++section) {
      SCOPED_TRACE(std::to_string(groups) + " groups, " + std::to_string(tiles) + " tiles, section " +
                   std::to_string(section));
      const std::uint32_t total = groups * tiles;
      std::vector<int> seen(total, 0);
      std::uint32_t prev_sec = 0, prev_qt = tiles;
      for (std::uint32_t j = 0; j < total; ++j) {
        const std::uint32_t idx = d::causal_ticket_tile(j, groups, section, section * tiles);
        ASSERT_LT(idx, total) << j;
        ++seen[idx];
        const std::uint32_t qt = tiles - 1 - idx / groups, g = idx % groups, sec = j / (section * tiles);
        EXPECT_EQ(g / section, sec) << j;
        if (sec != prev_sec) prev_qt = tiles;
        EXPECT_LE(qt, prev_qt) << j;
        prev_sec = sec;
        prev_qt = qt;
        if (section == groups) EXPECT_EQ(idx, j);
      }
      for (std::uint32_t idx = 0; idx < total; ++idx) EXPECT_EQ(seen[idx], 1) << idx;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, Fa3Forward,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::bf16, DType::fp16)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param));
                         });

}  // namespace
