// cuda_fa3 windowed calls (forward_window, backward_delta, backward_window:
// the building blocks of sequence parallelism, src/dist) against the float64
// reference on the whole sequence. The sequence is cut into query windows and,
// at other cut points, key windows; starting from out = 0, lse = -inf, one
// forward_window per (branch, query window, key window) must give forward()'s
// result, and backward_window over the same pairs, added into zeroed
// gradients, the gradients. Different cuts for queries and keys exercise
// windows that start inside segments and inside query tiles, query rows that
// see none of a key window's keys (causal), and key windows that start after
// the queries. Cases: dense, causal, LongNet (several branches, w % r != 0),
// head groups, dropout; d64 and d128 (d256 once); bf16 and fp16. Cases with
// equal query and key cuts on segment boundaries take the backward's v2-family
// path (plan.cu, run_backward_window_v2).
//
// Outputs are poisoned where the call must write (gradients start at zero, as
// the caller's accumulators do; out/lse start at the merge identity).
// Tolerances: the whole-sequence tests' (test_fa3_forward / test_fa3_backward)
// widened by 1.5x for forward and 1.25x for backward, since every windowed
// call rounds out (a merge) or dq/dk/dv (an add) to the 16-bit type once more:
// forward out |err| <= 3e-2 (bf16) / 6e-3 (fp16), lse rel. err <= 2e-3;
// backward max |err| / max |want| per tensor <= 5e-2 (bf16) / 1.25e-2 (fp16),
// and norm-wise ||err||_2 / ||want||_2 <= 2e-2 (bf16) / 5e-3 (fp16): the
// max-relative check alone lets many small gradients be wrong (a lost window
// pair's share of rows with small gradients) as long as the largest is right;
// the norm-wise one, tighter because rounding errors of independent sign add
// in quadrature, does not.
// Without a compute capability 9.x GPU every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "dilated/error.hpp"
#include "dilated/reference.hpp"
#include "fa3_window_support.hpp"
#include "../error_rule.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::HeadMode;
using dilated::ProblemShape;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Tensor;
using namespace fa3test;

struct WindowCase {
  Case c;
  std::vector<double> q_cuts, k_cuts;  // interior cut points as fractions of N
};

std::vector<WindowCase> cases() {
  std::vector<WindowCase> cs;
  const std::vector<double> q2 = {0.37}, k3 = {0.23, 0.61};
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({{"dense_d128" + tag, make({{1000, 1}}, causal), {2, 1000, 2, 128}}, q2, k3});
    cs.push_back({{"dense_d64" + tag, make({{768, 1}}, causal), {1, 768, 3, 64}}, {0.5}, {0.5}});
    cs.push_back({{"longnet_d128" + tag, make({{256, 1}, {512, 2}, {1024, 4}}, causal), {1, 2048, 4, 128}},
                  {0.25, 0.5, 0.75}, k3});
    cs.push_back({{"w_mod_r_d64" + tag, make({{384, 5}, {768, 6}}, causal), {1, 1536, 6, 64}}, q2, k3});
    cs.push_back({{"head_groups_d128" + tag, make({{128, 1}, {256, 2}, {512, 4}}, causal, HeadMode::HeadGroups),
                   {1, 512, 7, 128}},
                  {0.5}, {0.13, 0.77}});
    // Windows smaller than the dilation (empty residues) and than a tile.
    cs.push_back({{"r16_small_windows_d64" + tag, make({{128, 1}, {512, 16}}, causal), {1, 1024, 17, 64}},
                  {0.004, 0.5}, {0.009, 0.012, 0.9}});
  }
  // Equal query and key windows of whole segments (src/dist's local branches):
  // the backward runs the v2 family on the window as a sequence of its own;
  // "mixed" adds a branch longer than the windows (v1 on window pairs).
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({{"aligned_longnet_d128" + tag, make({{256, 1}, {512, 2}, {1024, 4}}, causal), {1, 2048, 4, 128}},
                  {0.5},
                  {0.5}});
    cs.push_back({{"aligned_dense_d64" + tag, make({{512, 1}}, causal), {2, 1536, 2, 64}}, {0.3334, 0.6667},
                  {0.3334, 0.6667}});
    cs.push_back({{"aligned_mixed_d128" + tag, make({{256, 1}, {2048, 4}}, causal), {1, 2048, 4, 128}}, {0.5},
                  {0.5}});
  }
  cs.push_back({{"longnet_d256", make({{64, 1}, {128, 2}, {256, 4}}, true), {1, 512, 3, 256}}, {0.5}, {0.3}});
  AttentionConfig drop = make({{256, 1}, {512, 2}, {1024, 4}}, true);
  drop.dropout_p = 0.15;
  drop.dropout_seed = 1234;
  cs.push_back({{"dropout_longnet_d128_causal", drop, {1, 1024, 3, 128}}, {0.4}, {0.55}});
  return cs;
}

// max |got - want| / max |want| over a tensor (NaN counts as infinite).
double normalized_error(const std::vector<std::uint16_t>& got, const std::vector<double>& want, DType t) {
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(from_half_bits(got[i], t) - want[i]);
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
    scale = std::max(scale, std::abs(want[i]));
  }
  return worst / std::max(scale, 1e-30);
}

// ||got - want||_2 / ||want||_2 over a tensor (NaN counts as infinite).
double normwise_error(const std::vector<std::uint16_t>& got, const std::vector<double>& want, DType t) {
  double err2 = 0, want2 = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = from_half_bits(got[i], t) - want[i];
    if (std::isnan(e)) return INFINITY;
    err2 += e * e;
    want2 += want[i] * want[i];
  }
  return std::sqrt(err2 / std::max(want2, 1e-300));
}

class Fa3Window : public ::testing::TestWithParam<std::tuple<WindowCase, DType>> {};

TEST_P(Fa3Window, WindowPairsComposeTheWholeSequence) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const WindowCase& wc = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  const ProblemShape& s = wc.c.shape;
  dilated::cuda_fa3::Plan plan(wc.c.config, s, dt);
  ASSERT_TRUE(plan.support().ok) << plan.support().reason;
  const Layout L{s};
  const auto qws = windows(s.seq_len, wc.q_cuts), kws = windows(s.seq_len, wc.k_cuts);

  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  std::mt19937_64 rng(0xC0FFEE + n);
  std::vector<double> q, k, v, dout;
  const auto qb = random_tensor(n, dt, rng, &q), kb = random_tensor(n, dt, rng, &k),
             vb = random_tensor(n, dt, rng, &v), dob = random_tensor(n, dt, rng, &dout);
  DeviceBuffer<std::uint16_t> dq_in(n), dk_in(n), dv_in(n), ddo(n), dout_buf(n), gq(n), gk(n), gv(n);
  DeviceBuffer<float> dlse(nl), ddelta(nl);
  dq_in.upload(qb);
  dk_in.upload(kb);
  dv_in.upload(vb);
  ddo.upload(dob);
  // The merge identity: out = 0, lse = -inf; gradients zero.
  dout_buf.upload(filled(n, 0.f, dt));
  std::vector<float> minus_inf(nl, -INFINITY);
  ASSERT_EQ(cudaMemcpy(dlse.ptr, minus_inf.data(), nl * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(ddelta.ptr, 0xFF, nl * 4), cudaSuccess);  // NaN: backward_delta must write it
  for (auto* g : {&gq, &gk, &gv}) g->upload(filled(n, 0.f, dt));

  const int branches = int(wc.c.config.branches.size());
  forward_all_windows(plan, L, branches, qws, kws, dq_in.ptr, dk_in.ptr, dv_in.ptr, dout_buf.ptr, dlse.ptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  backward_all_windows(plan, L, branches, qws, kws, dq_in.ptr, dk_in.ptr, dv_in.ptr, dout_buf.ptr, ddo.ptr, dlse.ptr,
                       ddelta.ptr, gq.ptr, gk.ptr, gv.ptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  // Forward against the reference.
  std::vector<double> want(n), want_lse(nl);
  dilated::reference::forward(wc.c.config, s, q.data(), k.data(), v.data(), want.data(), want_lse.data());
  const auto got = dout_buf.download();
  const auto got_lse = dlse.download();
  const double tol_out = dt == DType::bf16 ? 3e-2 : 6e-3, tol_lse = 2e-3;
  double worst = 0, worst_lse = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double e = std::abs(from_half_bits(got[i], dt) - want[i]);
    if (!(e <= tol_out)) ++bad;
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  for (std::size_t i = 0; i < nl; ++i) {
    double e;
    if (std::isinf(want_lse[i])) e = (std::isinf(got_lse[i]) && got_lse[i] < 0) ? 0 : INFINITY;
    else e = std::abs(got_lse[i] - want_lse[i]) / std::max(1.0, std::abs(want_lse[i]));
    if (!(e <= tol_lse)) ++bad;
    worst_lse = std::isnan(e) ? INFINITY : std::max(worst_lse, e);
  }
  EXPECT_EQ(bad, 0u) << "forward: max |out err| " << worst << " (tol " << tol_out << "), max lse err "
                     << worst_lse << " (tol " << tol_lse << ")";

  // Backward against the reference gradients.
  std::vector<double> wq(n), wk(n), wv(n);
  dilated::reference::backward(wc.c.config, s, q.data(), k.data(), v.data(), dout.data(), wq.data(), wk.data(),
                               wv.data());
  const double tol = dt == DType::bf16 ? 5e-2 : 1.25e-2, tol_norm = dt == DType::bf16 ? 2e-2 : 5e-3;
  const char* names[] = {"dq", "dk", "dv"};
  const std::vector<double>* wants[] = {&wq, &wk, &wv};
  const DeviceBuffer<std::uint16_t>* gots[] = {&gq, &gk, &gv};
  for (int g = 0; g < 3; ++g) {
    const auto got_g = gots[g]->download();
    const double max_rel = normalized_error(got_g, *wants[g], dt), norm = normwise_error(got_g, *wants[g], dt);
    std::cout << "[ error    ] " << names[g] << ": max-relative " << max_rel << " (tol " << tol << "), norm-wise "
              << norm << " (tol " << tol_norm << ")\n";
    EXPECT_LE(max_rel, tol) << names[g];
    EXPECT_LE(norm, tol_norm) << names[g] << " (norm-wise)";
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, Fa3Window,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::bf16, DType::fp16)),
                         [](const auto& info) {
                           return std::get<0>(info.param).c.name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param));
                         });

// A key window entirely after the query window under causal masking adds
// nothing: out and lse keep their values bit for bit.
TEST(Fa3WindowMasked, CausalKeysAfterTheQueriesLeaveOutAndLseAlone) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 512, 2, 64};
  dilated::cuda_fa3::Plan plan(make({{512, 1}}, true), s, DType::bf16);
  const Layout L{s};
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim), nl = std::size_t(s.heads * s.seq_len);
  std::mt19937_64 rng(5);
  std::vector<double> x;
  const auto bits = random_tensor(n, DType::bf16, rng, &x);
  DeviceBuffer<std::uint16_t> in(n), out(n);
  DeviceBuffer<float> lse(nl);
  in.upload(bits);
  out.upload(bits);  // arbitrary "earlier" values
  std::vector<float> l(nl, 1.5f);
  ASSERT_EQ(cudaMemcpy(lse.ptr, l.data(), nl * 4, cudaMemcpyHostToDevice), cudaSuccess);
  plan.forward_window(0, 0, 256, L.in(in.ptr, {0, 256}), L.out(out.ptr, {0, 256}), L.rows(lse.ptr, {0, 256}), 256,
                      256, L.in(in.ptr, {256, 256}), L.in(in.ptr, {256, 256}), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(out.download(), bits);
  const auto got = lse.download();
  for (std::size_t i = 0; i < nl; ++i) ASSERT_EQ(got[i], 1.5f) << i;
}

// Windows outside the sequence, unknown branches and block-sparse plans are
// refused before anything runs.
TEST(Fa3WindowErrors, BadWindowsAndBlockSparsePlansThrow) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 512, 2, 64};
  dilated::cuda_fa3::Plan plan(make({{256, 1}, {512, 2}}, false), s, DType::bf16);
  DeviceBuffer<std::uint16_t> buf(std::size_t(512 * 2 * 64));
  DeviceBuffer<float> lse(1024);
  const Layout L{s};
  auto call = [&](int br, std::int64_t qb, std::int64_t ql, std::int64_t kb, std::int64_t kl) {
    plan.forward_window(br, qb, ql, L.in(buf.ptr, {0, 1}), L.out(buf.ptr + 8, {0, 1}), L.rows(lse.ptr, {0, 1}), kb,
                        kl, L.in(buf.ptr, {0, 1}), L.in(buf.ptr, {0, 1}), nullptr);
  };
  EXPECT_EQ(dilated_test::rule_of([&] { call(2, 0, 16, 0, 16); }), "window.branch");
  EXPECT_EQ(dilated_test::rule_of([&] { call(0, 500, 16, 0, 16); }), "window.range");
  EXPECT_EQ(dilated_test::rule_of([&] { call(0, 0, 16, -1, 16); }), "window.range");
  EXPECT_EQ(dilated_test::rule_of([&] { call(0, 0, 0, 0, 16); }), "window.range");
  AttentionConfig bs;
  bs.block_sparse = dilated::BlockSparsePattern::local_window(512, 128, 1);
  dilated::cuda_fa3::Plan sparse(bs, s, DType::bf16);
  EXPECT_EQ(dilated_test::rule_of([&] {
              sparse.forward_window(0, 0, 16, L.in(buf.ptr, {0, 1}), L.out(buf.ptr + 8, {0, 1}),
                                    L.rows(lse.ptr, {0, 1}), 0, 16, L.in(buf.ptr, {0, 1}), L.in(buf.ptr, {0, 1}),
                                    nullptr);
            }),
            "window.block_sparse");
}

}  // namespace
