// The float64 reference checked against independent formulations written
// here: plain dense softmax attention, the union-softmax view of Eq. 10, and
// the head-group average.
#include "test_harness.hpp"

namespace dtest {
namespace {

std::int64_t at(const ProblemShape& s, std::int64_t b, std::int64_t p, std::int64_t h) {
  return ((b * s.seq_len + p) * s.heads + h) * s.head_dim;
}

// Softmax attention of query p over an explicit key list (positions).
void attend(const ProblemShape& s, const std::vector<double>& q, const std::vector<double>& k,
            const std::vector<double>& v, std::int64_t b, std::int64_t p, std::int64_t h,
            const std::vector<std::int64_t>& keys, double scale, double* out, double* lse) {
  std::vector<double> sc;
  for (std::int64_t kp : keys) {
    double d = 0;
    for (std::int64_t x = 0; x < s.head_dim; ++x) d += q[at(s, b, p, h) + x] * k[at(s, b, kp, h) + x];
    sc.push_back(d * scale);
  }
  const double mx = *std::max_element(sc.begin(), sc.end());
  double z = 0;
  for (double x : sc) z += std::exp(x - mx);
  for (std::int64_t x = 0; x < s.head_dim; ++x) out[x] = 0;
  for (std::size_t t = 0; t < keys.size(); ++t)
    for (std::int64_t x = 0; x < s.head_dim; ++x)
      out[x] += std::exp(sc[t] - mx) / z * v[at(s, b, keys[t], h) + x];
  *lse = mx + std::log(z);
}

TEST(Reference, DenseIsPlainSoftmaxAttention) {
  for (bool causal : {false, true}) {
    const ProblemShape s{2, 33, 3, 7};
    const AttentionConfig c = AttentionConfig::dense(33, causal);
    const auto q = random_vector(numel(s), 11), k = random_vector(numel(s), 12),
               v = random_vector(numel(s), 13);
    std::vector<double> out(numel(s)), lse(2 * 3 * 33), want(7);
    dilated::reference::forward(c, s, q.data(), k.data(), v.data(), out.data(), lse.data());
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t p = 0; p < 33; ++p)
        for (std::int64_t h = 0; h < 3; ++h) {
          std::vector<std::int64_t> keys;
          for (std::int64_t j = 0; j < (causal ? p + 1 : 33); ++j) keys.push_back(j);
          double wl;
          attend(s, q, k, v, b, p, h, keys, 1 / std::sqrt(7.0), want.data(), &wl);
          EXPECT_NEAR(lse[(b * 3 + h) * 33 + p], wl, 1e-12);
          for (int x = 0; x < 7; ++x) EXPECT_NEAR(out[at(s, b, p, h) + x], want[x], 1e-12);
        }
  }
}

// Eq. 10 == one softmax over the multiset union of the branches' keys,
// enumerated by brute force (segment ends clipped at N for partial segments).
TEST(Reference, Eq10EqualsUnionSoftmax) {
  for (bool causal : {false, true}) {
    for (bool partial : {false, true}) {
      const ProblemShape s{1, partial ? 53 : 48, 5, 6};
      const std::int64_t N = s.seq_len;
      AttentionConfig c = make_config({{12, 1}, {24, 5}, {48, 4}, {48, 4}}, causal);
      c.allow_partial_segments = partial;
      const auto q = random_vector(numel(s), 21), k = random_vector(numel(s), 22),
                 v = random_vector(numel(s), 23);
      std::vector<double> out(numel(s)), lse(5 * N), want(6);
      dilated::reference::forward(c, s, q.data(), k.data(), v.data(), out.data(), lse.data());
      for (std::int64_t p = 0; p < N; ++p)
        for (std::int64_t h = 0; h < 5; ++h) {
          std::vector<std::int64_t> keys;  // multiset union, by brute force
          for (const Branch& br : c.branches) {
            const std::int64_t w = br.segment_length, r = br.dilation, o = h % r;
            if ((p % w) % r != o) continue;
            for (std::int64_t j = (p / w) * w; j < std::min((p / w + 1) * w, N); ++j)
              if ((j % w) % r == o && (!causal || j <= p)) keys.push_back(j);
          }
          if (keys.empty()) {
            EXPECT_EQ(lse[h * N + p], -std::numeric_limits<double>::infinity());
            continue;
          }
          double wl;
          attend(s, q, k, v, 0, p, h, keys, 1 / std::sqrt(6.0), want.data(), &wl);
          EXPECT_NEAR(lse[h * N + p], wl, 1e-12) << "p=" << p << " h=" << h;
          for (int x = 0; x < 6; ++x) EXPECT_NEAR(out[at(s, 0, p, h) + x], want[x], 1e-12);
        }
    }
  }
}

// Head groups: each head attends with its group's single branch; output / k.
TEST(Reference, HeadGroupsAverageOneBranchPerGroup) {
 for (bool causal : {false, true}) {
  const ProblemShape s{1, 32, 5, 4};
  AttentionConfig c = make_config({{8, 1}, {16, 2}, {32, 3}}, causal, HeadMode::HeadGroups);
  c.softmax_scale = 0.5;
  const auto q = random_vector(numel(s), 31), k = random_vector(numel(s), 32),
             v = random_vector(numel(s), 33);
  std::vector<double> out(numel(s)), lse(5 * 32), want(4);
  dilated::reference::forward(c, s, q.data(), k.data(), v.data(), out.data(), lse.data());
  const int group[5] = {0, 0, 1, 1, 2};
  for (std::int64_t p = 0; p < 32; ++p)
    for (std::int64_t h = 0; h < 5; ++h) {
      const Branch br = c.branches[group[h]];
      const std::int64_t w = br.segment_length, r = br.dilation, o = group[h] % r;
      if ((p % w) % r != o) {
        for (int x = 0; x < 4; ++x) EXPECT_EQ(out[at(s, 0, p, h) + x], 0.0);
        continue;
      }
      std::vector<std::int64_t> keys;
      for (std::int64_t j = (p / w) * w; j < (p / w + 1) * w; ++j)
        if ((j % w) % r == o && (!causal || j <= p)) keys.push_back(j);
      double wl;
      attend(s, q, k, v, 0, p, h, keys, 0.5, want.data(), &wl);
      for (int x = 0; x < 4; ++x) EXPECT_NEAR(out[at(s, 0, p, h) + x], want[x] / 3, 1e-12);
    }
 }
}

}  // namespace
}  // namespace dtest
