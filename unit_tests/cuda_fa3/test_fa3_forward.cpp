// cuda_fa3 forward against the float64 reference: dense, causal, LongNet
// (w % r != 0, r = 16, unkept rows, ragged tails, partial segments), head
// groups; bf16 and fp16; head_dim 64, 128 and 256. Outputs are poisoned with
// NaN first, so a row the kernel forgets fails.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

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

std::vector<Case> cases() {
  std::vector<Case> cs;
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
  // >= 8192 keys, non-causal, head_dim 128: the 176-key blocks (ragged tail).
  cs.push_back({"wide_blocks_d128", make({{8300, 1}}, false), {1, 8300, 1, 128}});
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

INSTANTIATE_TEST_SUITE_P(AllCases, Fa3Forward,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::bf16, DType::fp16)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param));
                         });

}  // namespace
