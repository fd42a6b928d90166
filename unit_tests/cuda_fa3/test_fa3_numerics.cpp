// cuda_fa3 at the numeric extremes (issue 8's contract, README "Numerics"):
// logits of 1e4 before scaling, fp16 inputs near 65504, tiny and huge softmax
// scales, and non-finite inputs. Each against the float64 reference on the
// same rounded inputs.
//
// Non-finite contract on this backend: a NaN/inf in key j's K row reaches
// exactly the rows that attend to key j (masked scores are replaced by -inf
// before the softmax). A non-finite V row also reaches rows of the same
// 128-key block that do not attend to it (causal future, or past the segment
// end), because the tensor cores compute 0 * NaN = NaN in P V; the portable
// kernels avoid that, cuda_fa3 documents it (docs/cuda_fa3.md).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dilated/reference.hpp"
#include "fa3_test_support.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::ProblemShape;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Tensor;
using namespace fa3test;

struct Outcome {
  std::vector<double> out, lse;  // ours
  std::vector<double> want_out, want_lse;
};

// Runs forward on the given (already 16-bit-exact) inputs and the reference.
Outcome run_forward(const AttentionConfig& c, const ProblemShape& s, DType dt, const std::vector<double>& q,
        const std::vector<double>& k, const std::vector<double>& v) {
  const std::size_t n = q.size(), nl = std::size_t(s.batch * s.heads * s.seq_len);
  auto bits = [&](const std::vector<double>& x) {
    std::vector<std::uint16_t> b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = to_half_bits(float(x[i]), dt);
    return b;
  };
  DeviceBuffer<std::uint16_t> dq(n), dk(n), dv(n), dout(n);
  DeviceBuffer<float> dlse(nl);
  dq.upload(bits(q));
  dk.upload(bits(k));
  dv.upload(bits(v));
  cudaMemset(dout.ptr, 0xFF, n * 2);
  cudaMemset(dlse.ptr, 0xFF, nl * 4);
  const std::int64_t sb = s.seq_len * s.heads * s.head_dim, ss = s.heads * s.head_dim, sh = s.head_dim;
  dilated::cuda_fa3::Plan plan(c, s, dt);
  EXPECT_TRUE(plan.support().ok) << plan.support().reason;
  plan.forward(Tensor{dq.ptr, sb, ss, sh, 1}, Tensor{dk.ptr, sb, ss, sh, 1}, Tensor{dv.ptr, sb, ss, sh, 1},
               MutableTensor{dout.ptr, sb, ss, sh, 1}, LseTensor{dlse.ptr, s.heads * s.seq_len, s.seq_len, 1},
               nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Outcome r;
  for (std::uint16_t x : dout.download()) r.out.push_back(from_half_bits(x, dt));
  for (float x : dlse.download()) r.lse.push_back(x);
  r.want_out.resize(n);
  r.want_lse.resize(nl);
  dilated::reference::forward(c, s, q.data(), k.data(), v.data(), r.want_out.data(), r.want_lse.data());
  return r;
}

std::vector<double> uniform(std::size_t n, double amp, DType dt, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(-amp, amp);
  std::vector<double> x(n);
  for (double& e : x) e = from_half_bits(to_half_bits(float(d(rng)), dt), dt);
  return x;
}

double max_abs_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0;
  for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, std::isnan(a[i] - b[i]) ? INFINITY : std::abs(a[i] - b[i]));
  return e;
}

TEST(Fa3Numerics, LogitsOf1e4StayExact) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  // |q|, |k| ~ 10 with d = 128: raw scores up to ~1e4 (scaled ~1e3), so the
  // softmax is nearly one-hot: the max subtraction must be exact.
  const ProblemShape s{1, 256, 2, 128};
  for (bool causal : {false, true}) {
    const AttentionConfig c = make({{256, 1}}, causal);
    const std::size_t n = 256 * 2 * 128;
    const Outcome r = run_forward(c, s, DType::bf16, uniform(n, 10, DType::bf16, 1), uniform(n, 10, DType::bf16, 2),
                      uniform(n, 1, DType::bf16, 3));
    // One-hot rows: the output is a V row rounded to bf16 (8 bits).
    EXPECT_LE(max_abs_err(r.out, r.want_out), 1e-2) << "causal " << causal;
    for (std::size_t i = 0; i < r.lse.size(); ++i)
      ASSERT_LE(std::abs(r.lse[i] - r.want_lse[i]), 1e-3 * std::abs(r.want_lse[i]) + 1e-3) << i;
  }
}

TEST(Fa3Numerics, Fp16InputsNear65504) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  // V entries near the fp16 maximum: O is a convex combination, so it stays
  // representable; scores use a tiny scale so they stay moderate.
  const ProblemShape s{1, 128, 2, 64};
  AttentionConfig c = make({{128, 1}}, false);
  c.softmax_scale = 1e-6;
  const std::size_t n = 128 * 2 * 64;
  const Outcome r = run_forward(c, s, DType::fp16, uniform(n, 60000, DType::fp16, 4), uniform(n, 60000, DType::fp16, 5),
                    uniform(n, 65000, DType::fp16, 6));
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(r.out[i])) << i;
    worst = std::max(worst, std::abs(r.out[i] - r.want_out[i]) / 65504.0);
  }
  EXPECT_LE(worst, 4e-3);  // fp16 relative to the input range
}

TEST(Fa3Numerics, TinyAndHugeScales) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 256, 2, 64};
  const std::size_t n = 256 * 2 * 64;
  for (double scale : {1e-30, 1e3}) {
    AttentionConfig c = make({{128, 1}, {256, 2}}, true);
    c.softmax_scale = scale;
    const Outcome r = run_forward(c, s, DType::bf16, uniform(n, 1, DType::bf16, 7), uniform(n, 1, DType::bf16, 8),
                      uniform(n, 1, DType::bf16, 9));
    EXPECT_LE(max_abs_err(r.out, r.want_out), 2e-2) << "scale " << scale;
  }
}

// The forward's lazy softmax (softmax.cuh update_lazy) keeps the stabilizer
// of a tile's first key block for the later ones. Here the keys grow along
// the sequence, so later blocks' scores rise above it: by ~25 (log2 units)
// per block ("ramp": the power-of-two rescale, settle_lazy), or by ~300 at
// once ("jump": exp2 overflows, the warp recomputes its scores,
// score_recompute.cuh). Dense (128- and 176-key blocks), causal, fp16 and
// the fused LongNet chain (weighted blocks) against the float64 reference.
std::vector<double> growing_keys(std::vector<double> k, const ProblemShape& s, bool jump, DType dt) {
  for (std::int64_t t = 0; t < s.seq_len; ++t) {
    const double block = double(t % 2048) / 128.0;  // LongNet: again in every 2048-long unit
    const double a = jump ? (block >= 2 ? 200.0 : 1.0) : 1.0 + 20.0 * block;
    for (std::int64_t i = 0; i < s.heads * s.head_dim; ++i) {
      double& x = k[std::size_t(t * s.heads * s.head_dim + i)];
      x = from_half_bits(to_half_bits(float(x * a), dt), dt);
    }
  }
  return k;
}

TEST(Fa3Numerics, ScoresRisingAfterTheFirstKeyBlock) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  struct Setup {
    const char* name;
    AttentionConfig c;
    ProblemShape s;
    DType dt;
  };
  const std::vector<Setup> setups = {
      {"dense_d128", make({{1024, 1}}, false), {1, 1024, 2, 128}, DType::bf16},
      {"dense_d64_fp16", make({{1024, 1}}, false), {1, 1024, 2, 64}, DType::fp16},
      {"causal_d128", make({{1024, 1}}, true), {1, 1024, 2, 128}, DType::bf16},
      {"dense_d256", make({{512, 1}}, false), {1, 512, 2, 256}, DType::bf16},
      {"longnet_fused_d128", make({{2048, 1}, {4096, 2}, {8192, 4}}, false), {1, 8192, 4, 128}, DType::bf16},
      // The paper's five branches scaled down: a fused chain (r = 1, 2, 4) and
      // a two-member chain (r = 6, 12) of kDedup launches.
      {"longnet5_d128", make({{512, 1}, {1024, 2}, {2048, 4}, {3072, 6}, {6144, 12}}, false), {1, 6144, 4, 128},
       DType::bf16},
  };
  std::uint64_t seed = 20;
  for (const Setup& u : setups) {
    for (bool jump : {false, true}) {
      const std::size_t n = std::size_t(u.s.seq_len * u.s.heads * u.s.head_dim);
      const auto q = uniform(n, 1, u.dt, ++seed), v = uniform(n, 1, u.dt, ++seed);
      const auto k = growing_keys(uniform(n, 1, u.dt, ++seed), u.s, jump, u.dt);
      const Outcome r = run_forward(u.c, u.s, u.dt, q, k, v);
      EXPECT_LE(max_abs_err(r.out, r.want_out), 2e-2) << u.name << (jump ? " jump" : " ramp");
      double worst = 0;
      for (std::size_t i = 0; i < r.lse.size(); ++i)
        worst = std::max(worst, std::abs(r.lse[i] - r.want_lse[i]) / (std::abs(r.want_lse[i]) + 1.0));
      EXPECT_LE(worst, 1e-3) << u.name << (jump ? " jump" : " ramp");
    }
  }
}

TEST(Fa3Numerics, NanInAKeyRowReachesExactlyTheRowsThatAttendToIt) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 256, 1, 64};
  const AttentionConfig c = make({{256, 1}}, true);
  const std::size_t n = 256 * 64;
  std::vector<double> k = uniform(n, 1, DType::bf16, 11);
  const std::int64_t j = 100;  // key 100: rows >= 100 attend to it (causal)
  k[j * 64 + 3] = std::numeric_limits<double>::quiet_NaN();
  const Outcome r = run_forward(c, s, DType::bf16, uniform(n, 1, DType::bf16, 10), k, uniform(n, 1, DType::bf16, 12));
  for (std::int64_t row = 0; row < 256; ++row) {
    const bool nan_row = std::isnan(r.out[row * 64]);
    EXPECT_EQ(nan_row, row >= j) << "row " << row;
    EXPECT_EQ(std::isnan(r.want_out[row * 64]), row >= j) << "reference row " << row;
  }
}

}  // namespace
