// Backward pass against the float64 reference on every backend x dtype
// (16-bit storage included), with gradients poisoned before each call.
#include "test_harness.hpp"

namespace dtest {
namespace {

template <class B>
class Backward : public ::testing::Test {};
TYPED_TEST_SUITE(Backward, AllStorageBackends);

template <class B>
void check_backward(const Case& c, std::uint64_t seed, bool two_kernel) {
  SCOPED_TRACE(case_name(c.config, c.shape) + " on " + B::exec::name() +
               (two_kernel ? " (two-kernel scheme)" : ""));
  const ProblemShape& s = c.shape;
  const RandomInputs<B> in(s, seed);
  const auto &q = in.q, &k = in.k, &v = in.v, &dout = in.dout;
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  typename B::View4 dq("dq", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dk("dk", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
  poison(dq);
  poison(dk);
  poison(dv);

  dilated::Plan<typename B::exec> plan(c.config, s);
  plan.forward(q, k, v, out, lse);
  if (two_kernel)
    dilated::details::PlanTestAccess::backward_two_kernel(plan, q, k, v, out, lse, dout, dq, dk, dv);
  else
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
  Kokkos::fence();

  expect_reference_gradients(c.config, s, in, dq, dk, dv);
}

TYPED_TEST(Backward, MatchesFloat64Reference) {
  std::uint64_t seed = 5000;
  for (const Case& c : correctness_cases()) check_backward<TypeParam>(c, seed += 10, false);
}

// The dQ / dK-dV kernel pair that device backends run, exercised on every
// backend (host backends default to the fused one-pass kernel).
TYPED_TEST(Backward, TwoKernelSchemeMatchesFloat64Reference) {
  std::uint64_t seed = 7000;
  for (const Case& c : correctness_cases()) check_backward<TypeParam>(c, seed += 10, true);
}

// Sequences longer than Plan::half_merge_rows: 16-bit storage accumulates
// dq per chunk of queries and dk, dv per chunk of keys (4096, 4096, 1808
// rows here), chunk edges cutting through every branch's segments.
TYPED_TEST(Backward, LongSequenceGradientsInChunks) {
  const ProblemShape s{1, 10000, 1, 16};
  ASSERT_LT(dilated::Plan<typename TypeParam::exec>::half_merge_rows(s.seq_len), s.seq_len);
  check_backward<TypeParam>(
      Case{make_config({{1000, 1}, {2500, 2}, {5000, 4}, {10000, 5}}, true), s}, 9000, false);
}

}  // namespace
}  // namespace dtest
