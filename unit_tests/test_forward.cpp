// Forward pass against the float64 reference on every backend x dtype (16-bit
// storage included), over the whole correctness matrix, with outputs poisoned
// before each call.
#include "test_harness.hpp"

namespace dtest {
namespace {

template <class B>
class Forward : public ::testing::Test {};
TYPED_TEST_SUITE(Forward, AllStorageBackends);

template <class B>
void check_forward(const Case& c, std::uint64_t seed) {
  SCOPED_TRACE(case_name(c.config, c.shape) + " on " + B::exec::name());
  const ProblemShape& s = c.shape;
  std::vector<double> qd, kd, vd;
  auto q = to_view<B>(random_vector(numel(s), seed), s, &qd, "q");
  auto k = to_view<B>(random_vector(numel(s), seed + 1), s, &kd, "k");
  auto v = to_view<B>(random_vector(numel(s), seed + 2), s, &vd, "v");
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  poison(out);
  poison(lse);

  dilated::Plan<typename B::exec> plan(c.config, s);
  plan.forward(q, k, v, out, lse);
  Kokkos::fence();

  std::vector<double> ref_out(numel(s)), ref_lse(s.batch * s.heads * s.seq_len);
  dilated::reference::forward(c.config, s, qd.data(), kd.data(), vd.data(), ref_out.data(),
                              ref_lse.data());
  using T = typename B::value;
  EXPECT_LE(scaled_error(from_view(out), ref_out), Tol<T>::out);
  EXPECT_LE(scaled_error(lse_from_view(lse), ref_lse), Tol<T>::lse);
}

TYPED_TEST(Forward, MatchesFloat64Reference) {
  std::uint64_t seed = 1000;
  for (const Case& c : correctness_cases()) check_forward<TypeParam>(c, seed += 10);
}

// Sequences longer than Plan::half_merge_rows: 16-bit storage merges its
// branches in float one chunk of query rows at a time (4096, 4096, 1808
// rows here), chunk edges cutting through segments of every branch; the
// result must not depend on where the chunks fall. (float and double run the
// same case without chunks.)
TYPED_TEST(Forward, LongSequenceMergedInChunks) {
  const ProblemShape s{1, 10000, 1, 16};
  ASSERT_LT(dilated::Plan<typename TypeParam::exec>::half_merge_rows(s.seq_len), s.seq_len);
  for (const bool causal : {false, true})
    check_forward<TypeParam>(
        Case{make_config({{1000, 1}, {2500, 2}, {5000, 4}, {10000, 5}}, causal), s},
        causal ? 7100 : 7000);
}

// LayoutLeft and strided (subview) inputs go through the same pointer-and-
// strides path: the result must not depend on the layout.
TYPED_TEST(Forward, AnyLayoutGivesTheSameResult) {
  using B = TypeParam;
  using T = typename B::value;
  const ProblemShape s{2, 64, 3, 16};
  const AttentionConfig c = make_config({{16, 1}, {32, 2}}, true);
  std::vector<double> qd, kd, vd;
  auto q = to_view<B>(random_vector(numel(s), 1), s, &qd);
  auto k = to_view<B>(random_vector(numel(s), 2), s, &kd);
  auto v = to_view<B>(random_vector(numel(s), 3), s, &vd);
  Kokkos::View<T****, Kokkos::LayoutLeft, typename B::mem> ql("ql", 2, 64, 3, 16);
  Kokkos::deep_copy(ql, q);
  // A strided view: every other head_dim slot of a wider buffer.
  Kokkos::View<T*****, Kokkos::LayoutRight, typename B::mem> wide("wide", 2, 64, 3, 16, 2);
  auto ks = Kokkos::subview(wide, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, 1);
  Kokkos::deep_copy(ks, k);
  Kokkos::View<T****, Kokkos::LayoutLeft, typename B::mem> out("out", 2, 64, 3, 16);
  typename B::ViewL lse("lse", 2, 3, 64);
  poison(out);
  dilated::Plan<typename B::exec> plan(c, s);
  plan.forward(ql, ks, v, out, lse);
  Kokkos::fence();
  std::vector<double> ref_out(numel(s)), ref_lse(2 * 3 * 64);
  dilated::reference::forward(c, s, qd.data(), kd.data(), vd.data(), ref_out.data(),
                              ref_lse.data());
  EXPECT_LE(scaled_error(from_view(out), ref_out), Tol<T>::out);
}

// A (position, head) that no branch keeps has output 0 and LSE -inf, never NaN.
TYPED_TEST(Forward, UnkeptPositionsAreZeroWithMinusInfLse) {
  using B = TypeParam;
  const ProblemShape s{1, 32, 2, 8};
  const AttentionConfig c = make_config({{16, 2}, {32, 4}});  // head 0 keeps only even positions
  auto q = to_view<B>(random_vector(numel(s), 4), s);
  auto k = to_view<B>(random_vector(numel(s), 5), s);
  auto v = to_view<B>(random_vector(numel(s), 6), s);
  typename B::View4 out("out", 1, 32, 2, 8);
  typename B::ViewL lse("lse", 1, 2, 32);
  poison(out);
  poison(lse);
  dilated::Plan<typename B::exec> plan(c, s);
  plan.forward(q, k, v, out, lse);
  Kokkos::fence();
  auto oh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  auto lh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
  int unkept = 0;
  for (int p = 0; p < 32; ++p)
    for (int h = 0; h < 2; ++h) {
      // head 0: offset 0 in both branches -> odd positions unkept; head 1:
      // offset 1 (r=2) and 1 (r=4) -> even positions unkept.
      const bool kept = (p % 2) == h;
      if (kept) {
        EXPECT_TRUE(std::isfinite(lh(0, h, p))) << "p=" << p << " h=" << h;
        continue;
      }
      ++unkept;
      EXPECT_EQ(lh(0, h, p), -std::numeric_limits<double>::infinity()) << "p=" << p;
      for (int x = 0; x < 8; ++x) EXPECT_EQ(static_cast<double>(oh(0, p, h, x)), 0.0) << "p=" << p << " h=" << h;
    }
  EXPECT_EQ(unkept, 32);
}

}  // namespace
}  // namespace dtest
