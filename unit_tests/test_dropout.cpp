// Dropout: p = 0 is bit-identical to no dropout; masks are deterministic per
// seed and differ across seeds; the keep rate and the unbiasedness of the
// output match the statistics of inverted dropout.
#include "test_harness.hpp"

namespace dtest {
namespace {

template <class B>
class Dropout : public ::testing::Test {};
TYPED_TEST_SUITE(Dropout, AllBackends);

template <class B>
std::vector<double> run_forward(const AttentionConfig& c, const ProblemShape& s) {
  auto q = to_view<B>(random_vector(numel(s), 61), s);
  auto k = to_view<B>(random_vector(numel(s), 62), s);
  auto v = to_view<B>(random_vector(numel(s), 63), s);
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  poison(out);
  dilated::Plan<typename B::exec> plan(c, s);
  plan.forward(q, k, v, out, lse);
  Kokkos::fence();
  return from_view(out);
}

bool bit_identical(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

TYPED_TEST(Dropout, ZeroProbabilityIsBitIdenticalToNoDropout) {
  const ProblemShape s{1, 64, 3, 16};
  AttentionConfig plain = make_config({{16, 1}, {64, 4}}, true);
  AttentionConfig zero = plain;
  zero.dropout_p = 0.0;
  zero.dropout_seed = 12345;
  EXPECT_TRUE(bit_identical(run_forward<TypeParam>(plain, s), run_forward<TypeParam>(zero, s)));
  // ...whereas any p > 0 changes the result.
  AttentionConfig tiny = plain;
  tiny.dropout_p = 0.05;
  EXPECT_FALSE(bit_identical(run_forward<TypeParam>(plain, s), run_forward<TypeParam>(tiny, s)));
}

TYPED_TEST(Dropout, SameSeedSameMaskOtherSeedOtherMask) {
  const ProblemShape s{1, 64, 2, 16};
  AttentionConfig c = make_config({{32, 1}, {64, 2}});
  c.dropout_p = 0.5;
  c.dropout_seed = 1;
  const auto a = run_forward<TypeParam>(c, s);
  EXPECT_TRUE(bit_identical(a, run_forward<TypeParam>(c, s)));
  c.dropout_seed = 2;
  EXPECT_FALSE(bit_identical(a, run_forward<TypeParam>(c, s)));
}

TEST(DropoutRng, KeepRateAndScaleMatchP) {
  for (double p : {0.1, 0.5, 0.9}) {
    const dilated::DropoutParams d = dilated::make_dropout(p, 0xC0FFEE);
    const int n = 1 << 20;
    double kept = 0, mean = 0, lag_corr = 0, prev = 0;
    for (int i = 0; i < n; ++i) {
      const double f = d.factor(i % 3, i % 5, i / 1024, i % 1024, i % 2);
      kept += f != 0;
      mean += f;
      lag_corr += (f != 0) * (prev != 0);
      prev = f;
      ASSERT_TRUE(f == 0 || std::fabs(f - 1 / (1 - p)) < 1e-12);
    }
    const double keep = 1 - p, sigma = std::sqrt(keep * p / n);
    EXPECT_NEAR(kept / n, keep, 5 * sigma) << "p=" << p;
    EXPECT_NEAR(mean / n, 1.0, 5 * sigma / keep) << "p=" << p;
    // Neighbouring draws are independent: P(keep, keep) = keep^2.
    EXPECT_NEAR(lag_corr / n, keep * keep, 6 * std::sqrt(keep * keep / n)) << "p=" << p;
  }
}

// Masks of neighbouring seeds, heads, branches and batches are independent
// (a seed must not reproduce another seed's mask at shifted coordinates).
TEST(DropoutRng, NeighbouringSeedsAndCoordinatesAreIndependent) {
  const double p = 0.5, keep = 0.5;
  const int n = 1 << 16;
  auto agree = [&](auto fa, auto fb) {
    int both = 0;
    for (int i = 0; i < n; ++i) both += (fa(i) != 0) == (fb(i) != 0);
    return static_cast<double>(both) / n;  // 0.5 when independent
  };
  const auto d0 = dilated::make_dropout(p, 0), d1 = dilated::make_dropout(p, 1),
             d16 = dilated::make_dropout(p, 16);
  const double sigma = std::sqrt(keep * (1 - keep) / n);
  EXPECT_NEAR(agree([&](int i) { return d0.factor(0, 0, i, i / 7, 1); },
                    [&](int i) { return d1.factor(0, 0, i, i / 7, 0); }), 0.5, 6 * sigma);
  EXPECT_NEAR(agree([&](int i) { return d0.factor(0, 1, i, i / 7, 0); },
                    [&](int i) { return d16.factor(0, 0, i, i / 7, 0); }), 0.5, 6 * sigma);
  EXPECT_NEAR(agree([&](int i) { return d0.factor(1, 0, i, i / 7, 0); },
                    [&](int i) { return d1.factor(0, 0, i, i / 7, 0); }), 0.5, 6 * sigma);
  EXPECT_NEAR(agree([&](int i) { return d0.factor(0, 0, i, i / 7, 0); },
                    [&](int i) { return d0.factor(0, 0, i / 7, i, 0); }), 0.5, 6 * sigma);
}

// Inverted dropout is unbiased: averaged over many seeds the output tends to
// the dropout-free output.
TEST(DropoutStatistics, OutputIsUnbiased) {
  using B = Backend<Kokkos::DefaultHostExecutionSpace, double>;
  const ProblemShape s{1, 32, 2, 8};
  AttentionConfig c = make_config({{16, 1}, {32, 2}});
  const auto exact = run_forward<B>(c, s);
  c.dropout_p = 0.3;
  const int seeds = 400;
  std::vector<double> avg(exact.size(), 0.0);
  for (int seed = 0; seed < seeds; ++seed) {
    c.dropout_seed = 1000 + seed;
    const auto o = run_forward<B>(c, s);
    for (std::size_t i = 0; i < o.size(); ++i) avg[i] += o[i] / seeds;
  }
  double worst = 0;
  for (std::size_t i = 0; i < avg.size(); ++i) worst = std::max(worst, std::fabs(avg[i] - exact[i]));
  // Each output is a mean of <= 48 terms |p v| <= 1/0.7; 400 seeds: std error ~0.02.
  EXPECT_LT(worst, 0.1);
  EXPECT_GT(worst, 1e-6);  // and it is genuinely random
}

}  // namespace
}  // namespace dtest
