// cuda_fa3 backward against the float64 reference gradients: dense, causal,
// LongNet (w % r != 0, r = 16, unkept rows, partial segments), head groups;
// bf16 and fp16; head_dim 64, 128 and 256. Gradients are poisoned with NaN first.
// Every case runs with both backward kernels: v1, and v2 (FA3-style), which
// covers head_dim 64 and 128 without dropout and hands the other cases to v1; the
// test checks which kernel ran, so a v2 case cannot silently pass on v1.
// Suite V2Pipelined runs the cases v2 covers with v2p (software-pipelined v2).
//
// Also (no GPU needed): v2's fragment/shared-memory index maps for head_dim 64 and
// 128, and which kernel BackwardKernel::automatic and DILATED_FA3_BWD pick.
//
// Tolerance: max |got - want| over a tensor, divided by max |want| of that
// tensor, below 4e-2 (bf16) or 1e-2 (fp16). The kernel rounds P and dS to the
// 16-bit type before their products and uses the 16-bit forward output for
// delta = rowsum(dO * O), so errors scale with the 16-bit epsilon.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cuda_fa3/details/backward2_launch.cuh"
#include "cuda_fa3/details/backward2_shape.hpp"
#include "dilated/error.hpp"
#include "dilated/reference.hpp"
#include "fa3_test_support.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::Branch;
using dilated::HeadMode;
using dilated::ProblemShape;
using dilated::cuda_fa3::BackwardKernel;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Tensor;
using namespace fa3test;

std::vector<Case> cases() {
  std::vector<Case> cs;
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({"dense_d128" + tag, make({{300, 1}}, causal), {2, 300, 2, 128}});
    cs.push_back({"dense_d64" + tag, make({{256, 1}}, causal), {1, 256, 3, 64}});
    cs.push_back({"dense_d256" + tag, make({{200, 1}}, causal), {1, 200, 2, 256}});
    cs.push_back({"longnet_d256" + tag, make({{64, 1}, {128, 2}, {256, 6}}, causal), {1, 256, 3, 256}});
    cs.push_back({"longnet_d128" + tag, make({{128, 1}, {256, 2}, {512, 4}}, causal), {1, 512, 4, 128}});
    cs.push_back({"w_mod_r_d64" + tag, make({{192, 5}, {384, 6}}, causal), {1, 768, 6, 64}});
    cs.push_back({"r16_d64" + tag, make({{64, 1}, {512, 16}}, causal), {1, 512, 17, 64}});
    cs.push_back({"unkept_rows_d128" + tag, make({{128, 2}, {256, 4}}, causal), {1, 256, 3, 128}});
    cs.push_back({"head_groups_d64" + tag, make({{64, 1}, {128, 2}, {256, 4}}, causal, HeadMode::HeadGroups),
                  {1, 256, 7, 64}});
    cs.push_back({"partial_segments_d64" + tag, make({{128, 1}, {256, 3}}, causal, HeadMode::LongNet, true),
                  {1, 350, 3, 64}});
  }
  // More head_dim 128 shapes for v2: several query steps per key block (the
  // stage ring wraps), a partial last key block, one dilated branch (fp32
  // dK/dV path with a single launch), head groups (output scale 1/k).
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({"dense_long_d128" + tag, make({{1000, 1}}, causal), {1, 1000, 2, 128}});
    cs.push_back({"one_dilated_branch_d128" + tag, make({{512, 2}}, causal), {1, 512, 3, 128}});
    cs.push_back({"head_groups_d128" + tag, make({{128, 1}, {256, 2}}, causal, HeadMode::HeadGroups),
                  {1, 256, 5, 128}});
  }
  // LongNet chains (the forward's details/longnet_dedup.hpp: nested branches
  // skip keys an earlier branch counts with a weight): the backward runs on
  // the forward's merged LSE, unchanged; partial last segments.
  cs.push_back({"longnet_chain_d128", make({{256, 1}, {512, 2}, {1024, 4}}, false, HeadMode::LongNet, true),
                {1, 1300, 5, 128}});
  cs.push_back({"longnet_chain_d64", make({{256, 1}, {512, 2}, {1024, 4}}, false), {1, 1024, 5, 64}});
  // Dropout: the forward's counter-based mask, recomputed in the backward.
  for (bool causal : {false, true}) {
    AttentionConfig d = make({{128, 1}, {256, 2}}, causal);
    d.dropout_p = 0.15;
    d.dropout_seed = 99;
    cs.push_back({std::string("dropout_longnet_d64") + (causal ? "_causal" : ""), d, {1, 256, 3, 64}});
  }
  return cs;
}

double relative_error(const std::vector<std::uint16_t>& got, const std::vector<double>& want, DType dt) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(from_half_bits(got[i], dt) - want[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / std::max(scale, 1e-30);
}

class Fa3Backward : public ::testing::TestWithParam<std::tuple<Case, DType, BackwardKernel>> {};

TEST_P(Fa3Backward, MatchesFloat64ReferenceGradients) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const Case& c = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  const ProblemShape& s = c.shape;
  const BackwardKernel kernel = std::get<2>(GetParam());
  dilated::cuda_fa3::Plan plan(c.config, s, dt);
  ASSERT_TRUE(plan.backward_support().ok) << plan.backward_support().reason;
  plan.set_backward_kernel(kernel);
  const bool v2_covers = (s.head_dim == 64 || s.head_dim == 128) && c.config.dropout_p == 0.0;
  const char* want_kernel = !v2_covers                               ? "v1"
                            : kernel == BackwardKernel::v2           ? "v2"
                            : kernel == BackwardKernel::v2_pipelined ? "v2p"
                                                                     : "v1";
  ASSERT_STREQ(plan.backward_kernel_name(), want_kernel);

  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  std::mt19937_64 rng(0xbac0000 + n);
  std::vector<double> q, k, v, dout;
  const auto qb = random_tensor(n, dt, rng, &q), kb = random_tensor(n, dt, rng, &k),
             vb = random_tensor(n, dt, rng, &v), db = random_tensor(n, dt, rng, &dout);
  DeviceBuffer<std::uint16_t> dq_in(n), dk_in(n), dv_in(n), d_out(n), d_dout(n), gq(n), gk(n), gv(n);
  DeviceBuffer<float> d_lse(nl);
  dq_in.upload(qb);
  dk_in.upload(kb);
  dv_in.upload(vb);
  d_dout.upload(db);
  for (auto* g : {&gq, &gk, &gv}) ASSERT_EQ(cudaMemset(g->ptr, 0xFF, n * 2), cudaSuccess);

  const std::int64_t sb = s.seq_len * s.heads * s.head_dim, ss = s.heads * s.head_dim, sh = s.head_dim;
  auto in = [&](DeviceBuffer<std::uint16_t>& b) { return Tensor{b.ptr, sb, ss, sh, 1}; };
  auto mut = [&](DeviceBuffer<std::uint16_t>& b) { return MutableTensor{b.ptr, sb, ss, sh, 1}; };
  const LseTensor lse{d_lse.ptr, s.heads * s.seq_len, s.seq_len, 1};
  plan.forward(in(dq_in), in(dk_in), in(dv_in), mut(d_out), lse, nullptr);
  plan.backward(in(dq_in), in(dk_in), in(dv_in), in(d_out), lse, in(d_dout), mut(gq), mut(gk), mut(gv), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  std::vector<double> wq(n), wk(n), wv(n);
  dilated::reference::backward(c.config, s, q.data(), k.data(), v.data(), dout.data(), wq.data(), wk.data(),
                               wv.data());
  const double tol = dt == DType::bf16 ? 4e-2 : 1e-2;
  const double eq = relative_error(gq.download(), wq, dt), ek = relative_error(gk.download(), wk, dt),
               ev = relative_error(gv.download(), wv, dt);
  EXPECT_LE(eq, tol) << "dq";
  EXPECT_LE(ek, tol) << "dk";
  EXPECT_LE(ev, tol) << "dv";
  RecordProperty("errors", std::to_string(eq) + " " + std::to_string(ek) + " " + std::to_string(ev));
}

// v2's index arithmetic, copied from backward2_mainloop.cuh / _epilogue.cuh
// (keep in sync), checked on the host for head_dim 64 and 128: every map from
// (warpgroup, thread, fragment element) to a tile element or a shared-memory
// byte is one-to-one and onto its tile, and the shared-memory layout's
// buffers are disjoint and inside the allocation. Needs no GPU.
template <int D, int DqStages = 1>
void check_backward2_layout() {
  using Shape = dilated::cuda_fa3::details::Bwd2Shape<D, DqStages>;
  // m64nN accumulator fragment (wgmma): element 4 j + 2 rr + c of thread t
  // is (16 warp + lane / 4 + 8 rr, 8 j + 2 (lane % 4) + c).
  auto frag = [](int t, int idx) {
    const int warp = t / 32, lane = t % 32, j = idx / 4, rr = (idx / 2) % 2, c = idx % 2;
    return std::pair<int, int>{16 * warp + lane / 4 + 8 * rr, 8 * j + 2 * (lane % 4) + c};
  };
  for (int n : {64, D, Shape::kDqCols}) {
    std::set<std::pair<int, int>> seen;
    for (int t = 0; t < 128; ++t)
      for (int i = 0; i < n / 2; ++i) {
        const auto rc = frag(t, i);
        ASSERT_TRUE(rc.first >= 0 && rc.first < 64 && rc.second >= 0 && rc.second < n);
        ASSERT_TRUE(seen.insert(rc).second) << "n " << n;
      }
    ASSERT_EQ(int(seen.size()), 64 * n);
  }
  // dK/dV epilogue (bwd2_store_dkv): key 64 wg + 16 warp + lane / 4 + 8 rr,
  // column 8 j + 2 (lane % 4) (+1), elements dk[4 j + 2 rr (+1)], j < D / 8:
  // the CTA's 128 x D block once, each element from the matching fragment.
  {
    std::set<std::pair<int, int>> seen;
    for (int wg = 0; wg < 2; ++wg)
      for (int t = 0; t < 128; ++t)
        for (int rr = 0; rr < 2; ++rr)
          for (int j = 0; j < D / 8; ++j)
            for (int c = 0; c < 2; ++c) {
              const int lane = t % 32, warp = t / 32;
              const int key = 64 * wg + 16 * warp + lane / 4 + 8 * rr, col = 8 * j + 2 * (lane % 4) + c;
              ASSERT_TRUE(key < Shape::kBlockN && col < D);
              const auto rc = frag(t, 4 * j + 2 * rr + c);
              ASSERT_EQ(rc.first + 64 * wg, key);
              ASSERT_EQ(rc.second, col);
              ASSERT_TRUE(seen.insert({key, col}).second);
            }
    ASSERT_EQ(int(seen.size()), Shape::kBlockN * D);
  }
  // dS^T store: ads[j / 2][(j % 2) 2 + rr] packs dp[4 j + 2 rr], dp[4 j + 2 rr + 1]
  // (bwd2_pack: a[kk][i] = x[8 kk + 2 i], x[8 kk + 2 i + 1]); 4-byte words at
  // key * 128 + (((q * 2) >> 4) ^ (key & 7)) << 4 + (q * 2) & 15 = TMA's
  // 128-byte swizzle of (key, q): one 16 KiB panel, every word once.
  {
    std::set<int> words;
    for (int wg = 0; wg < 2; ++wg)
      for (int t = 0; t < 128; ++t)
        for (int j = 0; j < 8; ++j)
          for (int rr = 0; rr < 2; ++rr) {
            const int lane = t % 32, warp = t / 32;
            const int key = 64 * wg + 16 * warp + lane / 4 + 8 * rr, q = 8 * j + 2 * (lane % 4);
            const int kk = j / 2, i = (j % 2) * 2 + rr;
            ASSERT_EQ(8 * kk + 2 * i, 4 * j + 2 * rr);  // the packed pair is fragment (key, q), (key, q + 1)
            const auto rc = frag(t, 4 * j + 2 * rr);
            ASSERT_EQ(rc.first + 64 * wg, key);
            ASSERT_EQ(rc.second, q);
            const int byte = key * 128 + ((((q * 2) >> 4) ^ (key & 7)) << 4) + ((q * 2) & 15);
            const int plain = key * 128 + q * 2;  // unswizzled
            ASSERT_EQ(byte, (plain & ~0x70) | ((((plain >> 4) & 7) ^ ((plain >> 7) & 7)) << 4));
            ASSERT_EQ(byte % 4, 0);
            ASSERT_TRUE(byte >= 0 && byte + 4 <= Shape::kDsBytes);
            ASSERT_TRUE(words.insert(byte).second);
          }
    ASSERT_EQ(int(words.size()) * 4, Shape::kDsBytes);
  }
  // dQ staging (bwd2_store_dq): the warpgroup's 64 x kDqCols fp32 block in
  // kDqBoxes boxes of 32 columns, 128-byte swizzled; every 8-byte pair once,
  // each at (row, column) = the fragment's.
  {
    std::set<int> pairs;
    for (int t = 0; t < 128; ++t)
      for (int j = 0; j < Shape::kDqCols / 8; ++j)
        for (int rr = 0; rr < 2; ++rr) {
          const int lane = t % 32, warp = t / 32;
          const int row = 16 * warp + lane / 4 + 8 * rr;
          const int byte = 32 * (j % 4) + 8 * (lane % 4);
          const int chunk = (byte >> 4) ^ (row & 7);
          const int off = (j / 4) * Shape::kDqBoxBytes + row * 128 + (chunk << 4) + (byte & 15);
          const auto rc = frag(t, 4 * j + 2 * rr);
          ASSERT_EQ(rc.first, row);
          ASSERT_EQ(rc.second, 32 * (j / 4) + byte / 4);  // box j / 4, column byte / 4 in it
          ASSERT_TRUE(off >= 0 && off + 8 <= Shape::kDqBytesPerWg);
          ASSERT_TRUE(pairs.insert(off).second);
        }
    ASSERT_EQ(int(pairs.size()) * 8, Shape::kDqBytesPerWg);
  }
  // dQ products: (key rows, columns) of the two warpgroups. head_dim 128:
  // columns split, keys all; head_dim 64: keys split, columns all. Either
  // way each (key, column) of dS K is computed once per CTA.
  {
    std::set<std::pair<int, int>> seen;
    for (int wg = 0; wg < 2; ++wg) {
      const int key_row0 = Shape::kDqSplitKeys ? 64 * wg : 0;
      const int col0 = Shape::kDqSplitKeys ? 0 : wg * Shape::kDqCols;  // the TMA reduce's c0 of box 0
      for (int key = key_row0; key < key_row0 + Shape::kDqKeys; ++key)
        for (int col = col0; col < col0 + Shape::kDqCols; ++col) ASSERT_TRUE(seen.insert({key, col}).second);
    }
    ASSERT_EQ(int(seen.size()), Shape::kBlockN * D);
  }
  // Shared memory: [K][V][Q x2][dO x2][dS^T x2][dQ x2 x DqStages][LSE x2][delta x2][barriers]
  // disjoint, in order, inside the allocation (the +1024 covers the alignment).
  const int ends[][2] = {{Shape::kOffsetK, Shape::kTileBytesKV},
                         {Shape::kOffsetV, Shape::kTileBytesKV},
                         {Shape::kOffsetQ, Shape::kStages * Shape::kTileBytesQ},
                         {Shape::kOffsetDO, Shape::kStages * Shape::kTileBytesQ},
                         {Shape::kOffsetDS, Shape::kStages * Shape::kDsBytes},
                         {Shape::kOffsetDQ, Shape::kConsumerWarpgroups * Shape::kDqStages * Shape::kDqBytesPerWg},
                         {Shape::kOffsetLse, Shape::kStages * Shape::kBlockM * 4},
                         {Shape::kOffsetDelta, Shape::kStages * Shape::kBlockM * 4},
                         {Shape::kOffsetBarriers, 8 * Shape::kBarriers}};
  for (int i = 0; i + 1 < 9; ++i) ASSERT_EQ(ends[i][0] + ends[i][1], ends[i + 1][0]);
  ASSERT_LE(ends[8][0] + ends[8][1] + 1023, Shape::kSmemBytes);
  for (int i = 0; i < 6; ++i) ASSERT_EQ(ends[i][0] % 1024, 0);  // swizzled operands: 1024-byte aligned
  ASSERT_EQ(Shape::kDqBytesPerWg % 1024, 0);                       // every dQ staging buffer too
  // Named barriers: ids 1..15 exist; the dQ writer's full/empty ranges
  // (2 warpgroups x 2 buffers each) overlap neither each other nor the rest.
  ASSERT_GT(Shape::kBarDqFull, Shape::kBarDsOwn + 1);
  ASSERT_EQ(Shape::kBarDqEmpty, Shape::kBarDqFull + 4);
  ASSERT_LE(Shape::kBarDqEmpty + 3, 15);
  ASSERT_EQ(Shape::kTileBytesKV, Shape::kBlockN * D * 2);  // the K/V TMA boxes (64 columns x 128 rows per panel)
  ASSERT_EQ(Shape::kTileBytesQ, Shape::kBlockM * D * 2);
  ASSERT_EQ(Shape::kDqBoxes * 32, Shape::kDqCols);
}

TEST(Fa3Backward2Layout, HeadDim64) { check_backward2_layout<64>(); }
TEST(Fa3Backward2Layout, HeadDim128) { check_backward2_layout<128>(); }
TEST(Fa3Backward2Layout, HeadDim128DqWriter) { check_backward2_layout<128, 2>(); }

// DILATED_FA3_BWD_SCHEDULE picks the head_dim 128 member of the pipelined
// family (p, pw, r, rw, rwl); unset or empty is the default, anything else throws
// rather than silently timing the wrong kernel. Needs no GPU.
TEST(Fa3BackwardKernelChoice, ScheduleVariable) {
  using dilated::cuda_fa3::details::Bwd2Variant;
  using dilated::cuda_fa3::details::backward2_variant_from_env;
  const char* saved = std::getenv("DILATED_FA3_BWD_SCHEDULE");
  const std::string saved_value = saved ? saved : "";
  unsetenv("DILATED_FA3_BWD_SCHEDULE");
  EXPECT_EQ(backward2_variant_from_env(), dilated::cuda_fa3::details::kBackward2DefaultVariant);
  setenv("DILATED_FA3_BWD_SCHEDULE", "", 1);
  EXPECT_EQ(backward2_variant_from_env(), dilated::cuda_fa3::details::kBackward2DefaultVariant);
  const std::pair<const char*, Bwd2Variant> named[] = {{"p", Bwd2Variant::pipelined},
                                                       {"pw", Bwd2Variant::pipelined_writer},
                                                       {"r", Bwd2Variant::reordered},
                                                       {"rw", Bwd2Variant::reordered_writer},
                                                       {"rwl", Bwd2Variant::reordered_writer_lean}};
  for (const auto& [value, variant] : named) {
    setenv("DILATED_FA3_BWD_SCHEDULE", value, 1);
    EXPECT_EQ(backward2_variant_from_env(), variant) << value;
  }
  setenv("DILATED_FA3_BWD_SCHEDULE", "v2r", 1);
  EXPECT_THROW(backward2_variant_from_env(), dilated::Error);
  if (saved) setenv("DILATED_FA3_BWD_SCHEDULE", saved_value.c_str(), 1);
  else unsetenv("DILATED_FA3_BWD_SCHEDULE");
}

// BackwardKernel::automatic: DILATED_FA3_BWD=v1|v2|v2p overrides; without it
// the v2 family (v2p if kBackward2AutoPipelined) exactly where
// details::backward2_auto says, and never where v2 does not cover the
// problem. Needs no GPU (the plan only records support).
TEST(Fa3BackwardKernelChoice, AutomaticAndOverrides) {
  const char* saved = std::getenv("DILATED_FA3_BWD");
  const std::string saved_value = saved ? saved : "";
  auto name = [](std::int64_t head_dim, double dropout, BackwardKernel k = BackwardKernel::automatic) {
    AttentionConfig c = make({{256, 1}}, false);
    c.dropout_p = dropout;
    c.dropout_seed = 7;
    dilated::cuda_fa3::Plan plan(c, ProblemShape{1, 256, 2, head_dim}, DType::bf16);
    plan.set_backward_kernel(k);
    return std::string(plan.backward_kernel_name());
  };
  const std::string fam = dilated::cuda_fa3::details::kBackward2AutoPipelined ? "v2p" : "v2";
  const std::string auto64 = dilated::cuda_fa3::details::kBackward2AutoHeadDim64 ? fam : "v1";
  unsetenv("DILATED_FA3_BWD");
  EXPECT_EQ(name(128, 0.0), fam);
  EXPECT_EQ(name(64, 0.0), auto64);
  EXPECT_EQ(name(256, 0.0), "v1");
  EXPECT_EQ(name(128, 0.1), "v1");  // dropout: v1 only
  setenv("DILATED_FA3_BWD", "v1", 1);
  EXPECT_EQ(name(128, 0.0), "v1");
  EXPECT_EQ(name(64, 0.0), "v1");
  EXPECT_EQ(name(128, 0.0, BackwardKernel::v2), "v2");  // an explicit choice beats the variable
  setenv("DILATED_FA3_BWD", "v2", 1);
  EXPECT_EQ(name(128, 0.0), "v2");
  EXPECT_EQ(name(64, 0.0), "v2");
  EXPECT_EQ(name(256, 0.0), "v1");
  EXPECT_EQ(name(128, 0.0, BackwardKernel::v1), "v1");
  // v2p (software-pipelined v2): with v2's coverage.
  setenv("DILATED_FA3_BWD", "v2p", 1);
  EXPECT_EQ(name(128, 0.0), "v2p");
  EXPECT_EQ(name(64, 0.0), "v2p");
  EXPECT_EQ(name(256, 0.0), "v1");
  EXPECT_EQ(name(128, 0.1), "v1");
  EXPECT_EQ(name(128, 0.0, BackwardKernel::v2), "v2");
  unsetenv("DILATED_FA3_BWD");
  EXPECT_EQ(name(128, 0.0, BackwardKernel::v2_pipelined), "v2p");
  EXPECT_EQ(name(64, 0.0, BackwardKernel::v2_pipelined), "v2p");
  EXPECT_EQ(name(256, 0.0, BackwardKernel::v2_pipelined), "v1");
  EXPECT_EQ(name(128, 0.1, BackwardKernel::v2_pipelined), "v1");
  setenv("DILATED_FA3_BWD", "something else", 1);  // unknown values: as if unset
  EXPECT_EQ(name(128, 0.0), fam);
  EXPECT_EQ(name(64, 0.0), auto64);
  if (saved) setenv("DILATED_FA3_BWD", saved_value.c_str(), 1);
  else unsetenv("DILATED_FA3_BWD");
}

INSTANTIATE_TEST_SUITE_P(AllCases, Fa3Backward,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::bf16, DType::fp16),
                                            ::testing::Values(BackwardKernel::v1, BackwardKernel::v2)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) == BackwardKernel::v1 ? "_v1" : "_v2");
                         });

// v2p (BackwardKernel::v2_pipelined, DILATED_FA3_BWD=v2p): the cases v2 covers
// (head_dim 64 and 128 without dropout), so none of them falls back to v1.
std::vector<Case> v2_cases() {
  std::vector<Case> cs;
  for (const Case& c : cases())
    if ((c.shape.head_dim == 64 || c.shape.head_dim == 128) && c.config.dropout_p == 0.0) cs.push_back(c);
  return cs;
}

INSTANTIATE_TEST_SUITE_P(V2Pipelined, Fa3Backward,
                         ::testing::Combine(::testing::ValuesIn(v2_cases()),
                                            ::testing::Values(DType::bf16, DType::fp16),
                                            ::testing::Values(BackwardKernel::v2_pipelined)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param)) + "_v2p";
                         });

}  // namespace
