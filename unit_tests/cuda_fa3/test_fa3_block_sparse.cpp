// cuda_fa3 backward on block-sparse patterns (issue 4) against the float64
// reference gradients; the forward's block-sparse cases are in
// test_fa3_forward.cpp. Block-sparse runs the v1 backward (its 64-key tiles
// walk the query runs of dilated/pattern.hpp's rule); asking for v2 must still
// run v1, which the test checks. Gradients are poisoned with NaN first.
//
// Tolerance (as test_fa3_backward.cpp): max |got - want| over a tensor divided
// by max |want| of that tensor, <= 4e-2 (bf16), 1e-2 (fp16). Rows that attend
// to nothing must give exactly 0 in dq, and keys no query visits exactly 0 in
// dk and dv (structural zeros, checked exactly; NaN poison fails them too).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dilated/reference.hpp"
#include "fa3_test_support.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::BlockSparsePattern;
using dilated::ProblemShape;
using dilated::cuda_fa3::BackwardKernel;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Tensor;
using namespace fa3test;

AttentionConfig block_sparse(BlockSparsePattern p, bool causal) {
  AttentionConfig c;
  c.block_sparse = std::move(p);
  c.causal = causal;
  return c;
}

// `density` of the blocks of each layout, query block `empty_row` (if >= 0)
// and key block `empty_col` (if >= 0) with no block at all.
BlockSparsePattern random_blocks(std::int64_t n, std::int64_t bq, std::int64_t bk, std::int64_t layouts,
                                 double density, int empty_row, int empty_col) {
  BlockSparsePattern p;
  p.block_q = bq;
  p.block_k = bk;
  p.layouts = layouts;
  const std::int64_t nq = p.num_q_blocks(n), nk = p.num_k_blocks(n);
  p.mask.assign(std::size_t(layouts * nq * nk), 0);
  std::mt19937_64 rng(91);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t l = 0; l < layouts; ++l)
    for (std::int64_t i = 0; i < nq; ++i)
      for (std::int64_t j = 0; j < nk; ++j)
        p.mask[std::size_t((l * nq + i) * nk + j)] = i != empty_row && j != empty_col && u(rng) < density;
  return p;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  for (bool causal : {false, true}) {
    const std::string tag = causal ? "_causal" : "";
    cs.push_back({"local_d128" + tag, block_sparse(BlockSparsePattern::local_window(1024, 128, 1), causal),
                  {1, 1024, 2, 128}});
    cs.push_back({"global_local_d64" + tag, block_sparse(BlockSparsePattern::global_local(768, 128, 1, 1), causal),
                  {2, 768, 2, 64}});
    cs.push_back({"random90_d128" + tag, block_sparse(random_blocks(2048, 128, 128, 2, 0.1, 3, 6), causal),
                  {1, 2048, 2, 128}});
    // 256-row query blocks, N not a multiple of any block, head_dim 256 (two column halves).
    cs.push_back({"rect_d256" + tag, block_sparse(random_blocks(1000, 256, 128, 1, 0.4, -1, 2), causal),
                  {1, 1000, 2, 256}});
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

class Fa3BlockSparseBackward : public ::testing::TestWithParam<std::tuple<Case, DType, BackwardKernel>> {};

TEST_P(Fa3BlockSparseBackward, MatchesFloat64ReferenceGradients) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const Case& c = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  const ProblemShape& s = c.shape;
  dilated::cuda_fa3::Plan plan(c.config, s, dt);
  ASSERT_TRUE(plan.support().ok) << plan.support().reason;
  ASSERT_TRUE(plan.backward_support().ok) << plan.backward_support().reason;
  plan.set_backward_kernel(std::get<2>(GetParam()));
  ASSERT_STREQ(plan.backward_kernel_name(), "v1");  // block-sparse: v1 even when v2 is asked for

  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  std::mt19937_64 rng(0xb5000 + n);
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
  const auto hq = gq.download(), hk = gk.download(), hv = gv.download();
  EXPECT_LE(relative_error(hq, wq, dt), tol) << "dq";
  EXPECT_LE(relative_error(hk, wk, dt), tol) << "dk";
  EXPECT_LE(relative_error(hv, wv, dt), tol) << "dv";
  // Structural zeros must be exact: a query row that sees no key (reference
  // LSE = -inf) gets dq = 0, a key no query visits (its reference dv row is
  // all 0 - with random dout only structure gives that) gets dk = dv = 0.
  // (Zeros by cancellation, e.g. dq of a causal first row whose only key is
  // itself, are 0 only in exact arithmetic and are left to the tolerance.)
  std::vector<double> wout(n), wlse(nl);
  dilated::reference::forward(c.config, s, q.data(), k.data(), v.data(), wout.data(), wlse.data());
  const std::size_t d = std::size_t(s.head_dim);
  std::size_t zeros = 0, nonzero = 0;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t p = 0; p < s.seq_len; ++p)
      for (std::int64_t h = 0; h < s.heads; ++h) {
        const std::size_t row = std::size_t(((b * s.seq_len + p) * s.heads + h)) * d;
        const bool no_keys = std::isinf(wlse[std::size_t((b * s.heads + h) * s.seq_len + p)]);
        const bool no_queries =
            std::all_of(wv.begin() + row, wv.begin() + row + d, [](double x) { return x == 0.0; });
        for (std::size_t x = row; x < row + d; ++x) {
          if (no_keys) zeros += 1, nonzero += from_half_bits(hq[x], dt) != 0.0;
          if (no_queries)
            zeros += 2, nonzero += (from_half_bits(hk[x], dt) != 0.0) + (from_half_bits(hv[x], dt) != 0.0);
        }
      }
  EXPECT_EQ(nonzero, 0u) << "of " << zeros << " exact zeros";
}

INSTANTIATE_TEST_SUITE_P(AllCases, Fa3BlockSparseBackward,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::bf16, DType::fp16),
                                            ::testing::Values(BackwardKernel::v1, BackwardKernel::v2)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dilated::cuda_fa3::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) == BackwardKernel::v1 ? "_ask_v1" : "_ask_v2");
                         });

}  // namespace
