// cuda_fa3's windowed calls (forward_window, backward_delta, backward_window:
// what src/dist computes 16-bit shards with) at the numeric extremes, forward
// and backward, bf16 and fp16, against the float64 reference on the whole
// sequence (inputs rounded to the 16-bit type first, so both see the same
// values). The sequence is cut into query and key windows at different
// points, as in test_fa3_window.cpp, and composed from the merge identity
// (out = 0, lse = -inf, gradients 0); delta starts as NaN.
//
// Cases: raw scores of ~1e4 (|q|, |k| <= 10, d = 128); inputs near fp16's
// largest value 65504 (q, k with scale 1e-9; v with dout of 1e-3); softmax
// scales 1e-30 and 30; a NaN in one key's K row (non-causal: exactly the rows
// attending it are NaN, forward and backward; causal: forward rows >= the
// key); rows that no branch keeps (causal, no r = 1 branch: out 0 and lse
// -inf exactly, gradients unaffected by a NaN dout on those rows); long rows
// (forward at 16384 keys on sampled rows, forward + backward at 4096).
//
// Bounds (absolute, in natural magnitudes of each output, as in
// unit_tests/numerics_harness.hpp, so saturated softmaxes whose gradients
// cancel to ~0 are still measured against something meaningful):
//   out:  (tol_out * g + drift) * max|v|
//   lse:  tol_lse * g * max(1, |lse_ref|) + delta        (per row)
//   dq:   (tol_grad * g + 4 drift) * scale * 2A * max|k|
//   dk:   (tol_grad * g + 4 drift) * scale * 2A * max|q| * C
//   dv:   (tol_grad * g + 4 drift) * max|dout| * C
// with A = max_i ||dout_i||_2 * max_j ||v_j||_2 (>= |dP_ij|), C the largest
// column sum of P (the reference's dv for dout = 1), g = max(1, sqrt(keys
// per row / 4096)), delta = gamma_{d+2}(fp32) * scale * d * max|q| * max|k|
// (the worst error of one fp32 score) and drift = e^{2 delta} - 1.
// Each bound also adds eta, the 16-bit type's smallest subnormal (an output
// below half of it rounds to 0). tol_out, tol_grad are test_fa3_window's (bf16 3e-2 / 5e-2, fp16 6e-3 /
// 1.25e-2: the 16-bit P and dS of the tensor-core products and one rounding
// per windowed call), tol_lse = 2e-3. Without a compute capability 9.x GPU
// every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dilated/reference.hpp"
#include "fa3_window_support.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::ProblemShape;
using namespace fa3test;

struct Inputs {
  std::vector<double> q, k, v, dout;  // exact values of the 16-bit type
};
struct Outputs {
  std::vector<double> out, lse, dq, dk, dv;
};

std::size_t numel(const ProblemShape& s) { return std::size_t(s.batch * s.seq_len * s.heads * s.head_dim); }
std::size_t rows(const ProblemShape& s) { return std::size_t(s.batch * s.heads * s.seq_len); }

double round_to(double x, DType t) { return from_half_bits(to_half_bits(float(x), t), t); }

// Uniform values in (-amp, amp) (or magnitudes in [lo, amp] with random sign),
// rounded to the 16-bit type.
std::vector<double> uniform(std::size_t n, double amp, DType t, std::uint64_t seed, double lo = -1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo < 0 ? -amp : lo, amp);
  std::uniform_int_distribution<int> sign(0, 1);
  std::vector<double> x(n);
  for (double& e : x) e = round_to(lo < 0 ? d(rng) : (sign(rng) ? d(rng) : -d(rng)), t);
  return x;
}

Inputs random_inputs(const ProblemShape& s, DType t, std::uint64_t seed, double qk = 1.0) {
  const std::size_t n = numel(s);
  return Inputs{uniform(n, qk, t, seed), uniform(n, qk, t, seed + 1), uniform(n, 1, t, seed + 2),
                uniform(n, 1, t, seed + 3)};
}

std::vector<std::uint16_t> bits(const std::vector<double>& x, DType t) {
  std::vector<std::uint16_t> b(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) b[i] = to_half_bits(float(x[i]), t);
  return b;
}
std::vector<double> values(const std::vector<std::uint16_t>& b, DType t) {
  std::vector<double> x(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) x[i] = from_half_bits(b[i], t);
  return x;
}

// One forward_window per (branch, query window, key window) from the merge
// identity, then backward_delta per query window and backward_window per
// pair into zeroed gradients (skipped unless `backward`).
Outputs run_windows(const AttentionConfig& c, const ProblemShape& s, DType dt, const Inputs& in,
                    const std::vector<double>& q_cuts, const std::vector<double>& k_cuts, bool backward = true) {
  dilated::cuda_fa3::Plan plan(c, s, dt);
  EXPECT_TRUE(plan.support().ok) << plan.support().reason;
  const Layout L{s};
  const auto qws = windows(s.seq_len, q_cuts), kws = windows(s.seq_len, k_cuts);
  const std::size_t n = numel(s), nl = rows(s);
  DeviceBuffer<std::uint16_t> q(n), k(n), v(n), dout(n), out(n), gq(n), gk(n), gv(n);
  DeviceBuffer<float> lse(nl), delta(nl);
  q.upload(bits(in.q, dt));
  k.upload(bits(in.k, dt));
  v.upload(bits(in.v, dt));
  dout.upload(bits(in.dout, dt));
  out.upload(filled(n, 0.f, dt));
  const std::vector<float> minus_inf(nl, -INFINITY);
  EXPECT_EQ(cudaMemcpy(lse.ptr, minus_inf.data(), nl * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemset(delta.ptr, 0xFF, nl * 4), cudaSuccess);  // NaN: backward_delta must write it
  for (auto* g : {&gq, &gk, &gv}) g->upload(filled(n, 0.f, dt));
  const int branches = int(c.branches.size());
  forward_all_windows(plan, L, branches, qws, kws, q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Outputs r;
  r.out = values(out.download(), dt);
  for (float x : lse.download()) r.lse.push_back(x);
  if (!backward) return r;
  backward_all_windows(plan, L, branches, qws, kws, q.ptr, k.ptr, v.ptr, out.ptr, dout.ptr, lse.ptr, delta.ptr, gq.ptr,
                       gk.ptr, gv.ptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  r.dq = values(gq.download(), dt);
  r.dk = values(gk.download(), dt);
  r.dv = values(gv.download(), dt);
  return r;
}

Outputs run_reference(const AttentionConfig& c, const ProblemShape& s, const Inputs& in, bool backward = true) {
  Outputs r;
  r.out.resize(numel(s));
  r.lse.resize(rows(s));
  dilated::reference::forward(c, s, in.q.data(), in.k.data(), in.v.data(), r.out.data(), r.lse.data());
  if (backward) {
    r.dq.resize(numel(s));
    r.dk.resize(numel(s));
    r.dv.resize(numel(s));
    dilated::reference::backward(c, s, in.q.data(), in.k.data(), in.v.data(), in.dout.data(), r.dq.data(),
                                 r.dk.data(), r.dv.data());
  }
  return r;
}

double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double e : x)
    if (std::isfinite(e)) m = std::max(m, std::abs(e));
  return m;
}
// Largest 2-norm of a head_dim-long row.
double max_row_norm(const std::vector<double>& x, std::int64_t d) {
  double m = 0;
  for (std::size_t r = 0; r < x.size() / std::size_t(d); ++r) {
    double s = 0;
    for (std::int64_t i = 0; i < d; ++i) s += x[r * d + i] * x[r * d + i];
    if (std::isfinite(s)) m = std::max(m, std::sqrt(s));
  }
  return m;
}

struct Bounds {
  double out, lse_rel, lse_abs, dq, dk, dv;
};

// The header's bounds for one case; `C` = the largest column sum of P.
Bounds stated_bounds(const AttentionConfig& c, const ProblemShape& s, DType dt, const Inputs& in, double C,
                     std::int64_t keys_per_row) {
  const std::int64_t d = s.head_dim;
  const double u32 = std::numeric_limits<float>::epsilon() / 2;
  const double gamma = (d + 2) * u32 / (1 - (d + 2) * u32);
  const double scale = dilated::effective_softmax_scale(c, d);
  const double delta = gamma * scale * double(d) * max_abs(in.q) * max_abs(in.k);
  const double drift = std::expm1(2 * delta);
  const double g = std::max(1.0, std::sqrt(double(keys_per_row) / 4096.0));
  const double tol_out = dt == DType::bf16 ? 3e-2 : 6e-3, tol_grad = dt == DType::bf16 ? 5e-2 : 1.25e-2;
  const double A = max_row_norm(in.dout, d) * max_row_norm(in.v, d);
  const double grad = tol_grad * g + 4 * drift;
  // The smallest 16-bit subnormal: a result below half of it rounds to 0
  // (fp16 gradients at scale 1e-30 are 0 whatever the kernel computes).
  const double eta = std::ldexp(1.0, dt == DType::fp16 ? -24 : -133);
  return Bounds{(tol_out * g + drift) * max_abs(in.v) + eta,
                2e-3 * g,
                delta,
                grad * scale * 2 * A * max_abs(in.k) + eta,
                grad * scale * 2 * A * max_abs(in.q) * C + eta,
                grad * max_abs(in.dout) * C + eta};
}

double column_sum_max(const AttentionConfig& c, const ProblemShape& s, const Inputs& in) {
  Inputs ones = in;
  std::fill(ones.dout.begin(), ones.dout.end(), 1.0);
  std::vector<double> dq(numel(s)), dk(numel(s)), dv(numel(s));
  dilated::reference::backward(c, s, ones.q.data(), ones.k.data(), ones.v.data(), ones.dout.data(), dq.data(),
                               dk.data(), dv.data());
  return max_abs(dv);
}

// max |got - want| where both are finite; the count of elements whose
// finiteness differs (NaN vs number, or a different infinity).
struct Compare {
  double err = 0;
  std::size_t mismatches = 0, nonfinite = 0;
};
Compare compare(const std::vector<double>& got, const std::vector<double>& want) {
  Compare c;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const bool wf = std::isfinite(want[i]), gf = std::isfinite(got[i]);
    c.nonfinite += !wf;
    if (wf != gf || (!wf && !(std::isnan(want[i]) ? std::isnan(got[i]) : got[i] == want[i]))) {
      ++c.mismatches;
      continue;
    }
    if (wf) c.err = std::max(c.err, std::abs(got[i] - want[i]));
  }
  return c;
}

// Every output against the reference within `b`, non-finite exactly where
// the reference's is; prints how much of each bound the error uses.
void expect_within(const Outputs& got, const Outputs& ref, const Bounds& b, const std::string& what) {
  SCOPED_TRACE(what);
  const Compare out = compare(got.out, ref.out);
  double lse_ratio = 0;
  std::size_t lse_mismatch = 0;
  for (std::size_t i = 0; i < ref.lse.size(); ++i) {
    const double w = ref.lse[i], x = got.lse[i];
    if (!std::isfinite(w) || !std::isfinite(x)) {
      lse_mismatch += !(std::isnan(w) ? std::isnan(x) : x == w);
      continue;
    }
    lse_ratio = std::max(lse_ratio, std::abs(x - w) / (b.lse_rel * std::max(1.0, std::abs(w)) + b.lse_abs));
  }
  std::cout << "[ bound    ] " << what << ": error / bound = out " << out.err / b.out << ", lse " << lse_ratio;
  EXPECT_EQ(out.mismatches, 0u) << "out: finiteness differs from the reference";
  EXPECT_LE(out.err, b.out) << "out";
  EXPECT_EQ(lse_mismatch, 0u) << "lse: finiteness differs from the reference";
  EXPECT_LE(lse_ratio, 1.0) << "lse";
  if (!ref.dq.empty()) {
    const char* names[] = {"dq", "dk", "dv"};
    const std::vector<double>* g[] = {&got.dq, &got.dk, &got.dv};
    const std::vector<double>* w[] = {&ref.dq, &ref.dk, &ref.dv};
    const double bound[] = {b.dq, b.dk, b.dv};
    for (int i = 0; i < 3; ++i) {
      const Compare e = compare(*g[i], *w[i]);
      std::cout << ", " << names[i] << " " << e.err / bound[i];
      EXPECT_EQ(e.mismatches, 0u) << names[i] << ": finiteness differs from the reference";
      EXPECT_LE(e.err, bound[i]) << names[i];
    }
  }
  std::cout << "\n";
}

const std::vector<double> kQCuts = {0.37}, kKCuts = {0.23, 0.61};

void check_case(const AttentionConfig& c, const ProblemShape& s, DType dt, const Inputs& in,
                const std::string& what) {
  const Outputs ref = run_reference(c, s, in);
  const Bounds b = stated_bounds(c, s, dt, in, column_sum_max(c, s, in), s.seq_len);
  const Outputs got = run_windows(c, s, dt, in, kQCuts, kKCuts);
  expect_within(got, ref, b, what + " " + dilated::describe(c) + " " + dilated::cuda_fa3::to_string(dt));
}

class Fa3WindowNumerics : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  }
};

TEST_P(Fa3WindowNumerics, LogitsOf1e4) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1024, 2, 128};
  for (const AttentionConfig& c : {make({{1024, 1}}, true), make({{256, 1}, {512, 2}, {1024, 4}}, false)})
    check_case(c, s, dt, random_inputs(s, dt, 100, 10.0), "scores ~1e4");
}

TEST_P(Fa3WindowNumerics, InputsNear65504) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1024, 2, 64};
  const std::size_t n = numel(s);
  for (const AttentionConfig& base : {make({{1024, 1}}, true), make({{256, 1}, {512, 2}}, false)}) {
    // q, k near the maximum, scale 1e-9: scaled scores up to ~270.
    AttentionConfig tiny = base;
    tiny.softmax_scale = 1e-9;
    Inputs big_qk = random_inputs(s, dt, 200);
    big_qk.q = uniform(n, 65504, dt, 210, 60000);
    big_qk.k = uniform(n, 65504, dt, 220, 60000);
    check_case(tiny, s, dt, big_qk, "q, k near 65504");
    // v near the maximum, dout ~1e-3: out (a convex combination of v rows)
    // and the gradients stay in fp16's range (checked on the reference).
    Inputs big_v = random_inputs(s, dt, 230);
    big_v.v = uniform(n, 65504, dt, 240, 60000);
    for (double& x : big_v.dout) x = round_to(x * 1e-3, dt);
    const Outputs ref = run_reference(base, s, big_v);
    ASSERT_LE(max_abs(ref.out), max_abs(big_v.v));
    for (const std::vector<double>* t : {&ref.dq, &ref.dk, &ref.dv}) ASSERT_LT(max_abs(*t), 3e4);
    check_case(base, s, dt, big_v, "v near 65504");
  }
}

TEST_P(Fa3WindowNumerics, TinyAndLargeScales) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1024, 3, 64};
  for (double scale : {1e-30, 30.0})
    for (AttentionConfig c : {make({{1024, 1}}, true), make({{256, 1}, {512, 2}, {1024, 4}}, true)}) {
      c.softmax_scale = scale;
      check_case(c, s, dt, random_inputs(s, dt, 300), "scale " + std::to_string(scale));
    }
}

// Non-causal segments: rows attend all kept keys of their segment, so a NaN
// in one key's K row must reach exactly the reference's rows (out, lse, dq)
// and the keys those rows attend (dk, dv), nothing in the other segments.
TEST_P(Fa3WindowNumerics, NanInAKeyRowNonCausal) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1024, 2, 64};
  const AttentionConfig c = make({{256, 1}, {512, 2}}, false);
  Inputs in = random_inputs(s, dt, 400);
  in.k[(700 * 2 + 1) * 64 + 3] = std::numeric_limits<double>::quiet_NaN();  // position 700, head 1
  const Outputs ref = run_reference(c, s, in);
  std::size_t nan_rows = 0;
  for (double x : ref.lse) nan_rows += std::isnan(x);
  ASSERT_GT(nan_rows, 0u);
  ASSERT_LT(nan_rows, ref.lse.size() / 2) << "the NaN must stay local in the reference";
  const Bounds b = stated_bounds(c, s, dt, in, column_sum_max(c, s, in), s.seq_len);
  expect_within(run_windows(c, s, dt, in, kQCuts, kKCuts), ref, b,
                std::string("NaN in K[700] ") + dilated::cuda_fa3::to_string(dt));
}

// Causal: the forward's masked scores become -inf before the softmax, so the
// NaN reaches exactly the rows at or after the key (docs/cuda_fa3.md). Only
// the forward is held to this: the backward's dQ = dS K may meet the key's
// NaN at masked entries of its tile (0 * NaN on the tensor cores, as for V in
// the forward); that has not been measured.
TEST_P(Fa3WindowNumerics, NanInAKeyRowCausalForward) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1000, 1, 64};
  const AttentionConfig c = make({{1000, 1}}, true);
  Inputs in = random_inputs(s, dt, 500);
  const std::int64_t j = 700;
  in.k[j * 64 + 3] = std::numeric_limits<double>::quiet_NaN();
  const Outputs got = run_windows(c, s, dt, in, kQCuts, kKCuts, /*backward=*/false);
  std::size_t wrong = 0;
  for (std::int64_t row = 0; row < s.seq_len; ++row) {
    const bool nan_row = std::isnan(got.out[row * 64]) || std::isnan(got.lse[row]);
    wrong += nan_row != (row >= j);
  }
  EXPECT_EQ(wrong, 0u) << "rows whose NaN-ness is not (row >= " << j << ")";
}

// Causal with no r = 1 branch: rows that no branch keeps for their head
// attend nothing. They keep the merge identity exactly (out 0, lse -inf), and
// a NaN in their dout (delta NaN) must not reach any gradient.
TEST_P(Fa3WindowNumerics, FullyMaskedRowsStayZero) {
  const DType dt = GetParam();
  const ProblemShape s{1, 1024, 3, 64};
  const AttentionConfig c = make({{256, 2}, {512, 4}}, true);
  Inputs in = random_inputs(s, dt, 600);
  const Outputs fwd = run_reference(c, s, in, false);
  std::size_t masked = 0;
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t p = 0; p < s.seq_len; ++p)
      if (std::isinf(fwd.lse[h * s.seq_len + p])) {
        ++masked;
        for (std::int64_t x = 0; x < 64; ++x)
          in.dout[(p * s.heads + h) * 64 + x] = std::numeric_limits<double>::quiet_NaN();
      }
  ASSERT_GT(masked, 0u);
  const Outputs ref = run_reference(c, s, in);
  const Outputs got = run_windows(c, s, dt, in, {0.004, 0.37}, kKCuts);
  std::size_t not_identity = 0;
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t p = 0; p < s.seq_len; ++p) {
      if (!std::isinf(fwd.lse[h * s.seq_len + p])) continue;
      bool ok = got.lse[h * s.seq_len + p] == -INFINITY;
      for (std::int64_t x = 0; x < 64; ++x) ok = ok && got.out[(p * s.heads + h) * 64 + x] == 0.0;
      not_identity += !ok;
    }
  EXPECT_EQ(not_identity, 0u) << "of " << masked << " fully masked rows";
  const Bounds b = stated_bounds(c, s, dt, in, column_sum_max(c, s, in), s.seq_len);
  expect_within(got, ref, b, std::string("fully masked rows ") + dilated::cuda_fa3::to_string(dt));
}

// Long rows: float accumulation error grows with the keys per row (bound
// factor g = sqrt(keys / 4096)). Forward at 16384 keys, causal dense, the
// reference on every 37th row; forward + backward at 4096 in full.
TEST_P(Fa3WindowNumerics, LongRows) {
  const DType dt = GetParam();
  {
    const std::int64_t n = 16384;
    const ProblemShape s{1, n, 1, 128};
    const AttentionConfig c = make({{n, 1}}, true);
    const Inputs in = random_inputs(s, dt, 700);
    const Outputs got = run_windows(c, s, dt, in, {0.25, 0.5, 0.75}, {0.3, 0.6}, false);
    const Bounds b = stated_bounds(c, s, dt, in, 1.0, n);
    double err = 0, lse_ratio = 0;
    std::vector<double> row(128);
    for (std::int64_t p = 0; p < n; p += 37) {
      double lse = 0;
      dilated::reference::forward_row(c, s, in.q.data(), in.k.data(), in.v.data(), 0, p, 0, row.data(), &lse);
      for (int x = 0; x < 128; ++x) {
        const double e = std::abs(got.out[p * 128 + x] - row[x]);
        err = std::isnan(e) ? INFINITY : std::max(err, e);
      }
      const double e = std::abs(got.lse[p] - lse) / (b.lse_rel * std::max(1.0, std::abs(lse)) + b.lse_abs);
      lse_ratio = std::isnan(e) ? INFINITY : std::max(lse_ratio, e);
    }
    std::cout << "[ bound    ] n = 16384 " << dilated::cuda_fa3::to_string(dt) << ": error / bound = out "
              << err / b.out << ", lse " << lse_ratio << "\n";
    EXPECT_LE(err, b.out);
    EXPECT_LE(lse_ratio, 1.0);
  }
  const ProblemShape s{1, 4096, 1, 128};
  check_case(make({{4096, 1}}, true), s, dt, random_inputs(s, dt, 800), "n = 4096");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Fa3WindowNumerics, ::testing::Values(DType::bf16, DType::fp16),
                         [](const auto& info) { return std::string(dilated::cuda_fa3::to_string(info.param)); });

}  // namespace
