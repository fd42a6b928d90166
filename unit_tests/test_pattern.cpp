// The sparsity rule (pattern.hpp) against brute-force enumeration, and the
// cost model against closed forms.
#include "test_harness.hpp"

namespace dtest {
namespace {

using dilated::PatternParams;

TEST(Pattern, KeptPositionsMatchBruteForce) {
  int checked = 0;
  for (std::int64_t w : {1, 5, 12, 16, 48}) {
    for (std::int64_t r = 1; r <= w && r <= 13; ++r) {
      for (std::int64_t N : {w, 3 * w, 3 * w + 2}) {
        AttentionConfig c = make_config({{w, r}});
        c.allow_partial_segments = true;
        const PatternParams pat = dilated::make_pattern(c, {1, N, r, 4});
        for (std::int64_t o = 0; o < r; ++o) {
          std::vector<std::vector<std::int64_t>> by_seg(pat.num_segments(0));
          for (std::int64_t p = 0; p < N; ++p)
            if ((p % w) % r == o) by_seg[p / w].push_back(p);
          for (std::int64_t s = 0; s < pat.num_segments(0); ++s) {
            const auto& want = by_seg[s];
            ASSERT_EQ(pat.kept_count(0, s, o), static_cast<std::int64_t>(want.size()))
                << "w=" << w << " r=" << r << " N=" << N << " o=" << o << " s=" << s;
            EXPECT_LE(pat.kept_count(0, s, o), pat.max_kept_count(0));
            for (std::size_t j = 0; j < want.size(); ++j) {
              EXPECT_EQ(pat.position(0, s, o, j), want[j]);
              std::int64_t seg = -1, jj = -1;
              ASSERT_TRUE(pat.keeps(0, o, want[j], &seg, &jj));
              EXPECT_EQ(seg, s);
              EXPECT_EQ(jj, static_cast<std::int64_t>(j));
              ++checked;
            }
          }
          for (std::int64_t p = 0; p < N; ++p) {
            std::int64_t seg, jj;
            EXPECT_EQ(pat.keeps(0, o, p, &seg, &jj), (p % w) % r == o) << "p=" << p;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(Pattern, LongNetOffsetsAreHeadModDilation) {
  const PatternParams pat =
      dilated::make_pattern(make_config({{12, 1}, {24, 5}, {48, 6}}), {1, 48, 13, 8});
  for (std::int64_t h = 0; h < 13; ++h)
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(pat.active(h, i));
      EXPECT_EQ(pat.offset(h, i), h % pat.dilation[i]);
    }
  EXPECT_EQ(pat.output_scale(), 1.0);
}

// dilated-attention-pytorch: group sizes H // k, the first H % k groups get
// one more; group i uses offset i % r_i; output divided by k.
TEST(Pattern, HeadGroupsMatchThePythonPackage) {
  const PatternParams pat = dilated::make_pattern(
      make_config({{8, 1}, {16, 2}, {32, 4}}, false, HeadMode::HeadGroups), {1, 32, 7, 8});
  const int want_group[7] = {0, 0, 0, 1, 1, 2, 2};
  for (int h = 0; h < 7; ++h) {
    EXPECT_EQ(pat.group_of_head(h), want_group[h]) << "h=" << h;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(pat.active(h, i), i == want_group[h]);
      EXPECT_EQ(pat.offset(h, i), i % pat.dilation[i]);
    }
  }
  EXPECT_DOUBLE_EQ(pat.output_scale(), 1.0 / 3.0);
}

TEST(Cost, DenseAndCausalPairsAreClosedForm) {
  const double N = 96, H = 3, B = 2, d = 16;
  const ProblemShape s{2, 96, 3, 16};
  EXPECT_DOUBLE_EQ(dilated::attended_pairs(AttentionConfig::dense(96), s), B * H * N * N);
  EXPECT_DOUBLE_EQ(dilated::attended_pairs(AttentionConfig::dense(96, true), s),
                   B * H * N * (N + 1) / 2);
  EXPECT_DOUBLE_EQ(dilated::forward_flops(AttentionConfig::dense(96), s), 4 * d * B * H * N * N);
  EXPECT_DOUBLE_EQ(dilated::backward_flops(AttentionConfig::dense(96), s),
                   2.5 * 4 * d * B * H * N * N);
}

TEST(Cost, LongNetPairsMatchThePapersFormula) {
  // With r | w and N % w == 0: sum_i (N / w_i) * (w_i / r_i)^2 per head.
  const ProblemShape s{1, 4096, 16, 64};
  const AttentionConfig c = make_config({{512, 1}, {1024, 2}, {2048, 4}, {4096, 8}});
  double want = 0;
  for (const Branch& b : c.branches)
    want += (4096.0 / b.segment_length) * std::pow(b.segment_length / double(b.dilation), 2);
  EXPECT_DOUBLE_EQ(dilated::attended_pairs(c, s), want * 16);
}

TEST(Config, LongNetDefaultIsThePapersSchedule) {
  const AttentionConfig c = AttentionConfig::longnet_default(1 << 20);
  ASSERT_EQ(c.branches.size(), 5u);
  const std::int64_t w[5] = {2048, 4096, 8192, 16384, 32768}, r[5] = {1, 2, 4, 6, 12};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(c.branches[i].segment_length, w[i]);
    EXPECT_EQ(c.branches[i].dilation, r[i]);
  }
  EXPECT_EQ(AttentionConfig::longnet_default(4096).branches.size(), 2u);
}

}  // namespace
}  // namespace dtest
