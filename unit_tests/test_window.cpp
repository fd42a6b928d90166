// Windowed calls (Plan::forward_window / backward_window), the building
// blocks of sequence parallelism: queries and keys taken from separate windows
// of the sequence. Cutting the sequence into shards (even and uneven, aligned
// to segments or not) and summing over every (query shard, key shard, branch)
// must reproduce the float64 reference of the whole sequence.
#include <tuple>

#include "test_harness.hpp"
#include "error_rule.hpp"

namespace dtest {
namespace {

template <class B>
class Window : public ::testing::Test {};
TYPED_TEST_SUITE(Window, AllBackends);

using Cuts = std::vector<std::int64_t>;  // shard boundaries, 0 ... N

// Shard boundaries: P even shards when P divides N, plus one uneven cut.
std::vector<Cuts> shardings(std::int64_t n) {
  std::vector<Cuts> out;
  for (std::int64_t p : {2, 3, 4})
    if (n % p == 0) {
      Cuts c;
      for (std::int64_t i = 0; i <= p; ++i) c.push_back(i * n / p);
      out.push_back(c);
    }
  out.push_back({0, n / 4 + 1, n / 2 + 3, n});
  return out;
}

template <class V>
auto rows(const V& v, std::int64_t b, std::int64_t e) {
  return Kokkos::subview(v, Kokkos::ALL, std::make_pair(b, e), Kokkos::ALL, Kokkos::ALL);
}
template <class V>
auto lse_rows(const V& v, std::int64_t b, std::int64_t e) {
  return Kokkos::subview(v, Kokkos::ALL, Kokkos::ALL, std::make_pair(b, e));
}

template <class B>
void check_windows(const Case& c, const Cuts& cuts, std::uint64_t seed, bool two_kernel) {
  std::ostringstream cs;
  for (auto x : cuts) cs << x << " ";
  SCOPED_TRACE(case_name(c.config, c.shape) + " cuts " + cs.str() + "on " + B::exec::name() +
               (two_kernel ? " (two-kernel scheme)" : ""));
  using T = typename B::value;
  using Acc = typename B::acc;
  const ProblemShape& s = c.shape;
  const RandomInputs<B> in(s, seed);
  const auto &q = in.q, &k = in.k, &v = in.v, &dout = in.dout;
  const auto &qd = in.qd, &kd = in.kd, &vd = in.vd, &dod = in.dod;
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len), delta("delta", s.batch, s.heads,
                                                                    s.seq_len);
  typename B::View4 dq("dq", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dk("dk", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
  dilated::Plan<typename B::exec> plan(c.config, s);
  typename B::exec space;
  const std::size_t shards = cuts.size() - 1;

  // Forward: out = 0, lse = -inf (what forward() starts from), then merge.
  Kokkos::deep_copy(out, T(0));
  Kokkos::deep_copy(lse, -std::numeric_limits<Acc>::infinity());
  for (std::size_t a = 0; a < shards; ++a)
    for (int br = 0; br < static_cast<int>(c.config.branches.size()); ++br)
      for (std::size_t b = 0; b < shards; ++b)
        plan.forward_window(space, br, cuts[a], rows(q, cuts[a], cuts[a + 1]),
                            rows(out, cuts[a], cuts[a + 1]), lse_rows(lse, cuts[a], cuts[a + 1]),
                            cuts[b], rows(k, cuts[b], cuts[b + 1]), rows(v, cuts[b], cuts[b + 1]));
  space.fence();
  std::vector<double> rout(numel(s)), rlse(s.batch * s.heads * s.seq_len);
  dilated::reference::forward(c.config, s, qd.data(), kd.data(), vd.data(), rout.data(),
                              rlse.data());
  EXPECT_LE(scaled_error(from_view(out), rout), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(lse), rlse), Tol<T>::lse) << "lse";

  // Backward: gradients accumulate over every window pair.
  Kokkos::deep_copy(dq, T(0));
  Kokkos::deep_copy(dk, T(0));
  Kokkos::deep_copy(dv, T(0));
  for (std::size_t a = 0; a < shards; ++a)
    plan.backward_delta(space, rows(out, cuts[a], cuts[a + 1]), rows(dout, cuts[a], cuts[a + 1]),
                        lse_rows(delta, cuts[a], cuts[a + 1]));
  for (std::size_t a = 0; a < shards; ++a)
    for (int br = 0; br < static_cast<int>(c.config.branches.size()); ++br)
      for (std::size_t b = 0; b < shards; ++b) {
        const auto args = std::make_tuple(
            space, br, cuts[a], rows(q, cuts[a], cuts[a + 1]), rows(dout, cuts[a], cuts[a + 1]),
            lse_rows(lse, cuts[a], cuts[a + 1]), lse_rows(delta, cuts[a], cuts[a + 1]),
            rows(dq, cuts[a], cuts[a + 1]), cuts[b], rows(k, cuts[b], cuts[b + 1]),
            rows(v, cuts[b], cuts[b + 1]), rows(dk, cuts[b], cuts[b + 1]),
            rows(dv, cuts[b], cuts[b + 1]));
        std::apply(
            [&](const auto&... x) {
              if (two_kernel)  // the dQ / dK-dV kernels device backends run, on windows
                dilated::details::PlanTestAccess::backward_window_two_kernel(plan, x...);
              else
                plan.backward_window(x...);
            },
            args);
      }
  space.fence();
  std::vector<double> rdq(numel(s)), rdk(numel(s)), rdv(numel(s));
  dilated::reference::backward(c.config, s, qd.data(), kd.data(), vd.data(), dod.data(),
                               rdq.data(), rdk.data(), rdv.data());
  EXPECT_LE(scaled_error(from_view(dq), rdq), Tol<T>::grad) << "dq";
  EXPECT_LE(scaled_error(from_view(dk), rdk), Tol<T>::grad) << "dk";
  EXPECT_LE(scaled_error(from_view(dv), rdv), Tol<T>::grad) << "dv";
}

TYPED_TEST(Window, ShardedWindowsMatchFloat64Reference) {
  std::uint64_t seed = 9100;
  for (const Case& c : correctness_cases()) {
    if (c.shape.head_dim > 64 || c.shape.seq_len > 300) continue;  // keep the matrix quick
    for (const Cuts& cuts : shardings(c.shape.seq_len))
      for (bool two_kernel : {false, true})
        check_windows<TypeParam>(c, cuts, seed += 10, two_kernel);
  }
}

// A window outside the sequence, a wrong shard shape or a bad branch is an
// error before anything is written.
TYPED_TEST(Window, RejectsBadWindows) {
  using B = TypeParam;
  const ProblemShape s{1, 64, 2, 16};
  dilated::Plan<typename B::exec> plan(make_config({{16, 1}, {64, 2}}), s);
  typename B::View4 q("q", 1, 32, 2, 16), k("k", 1, 32, 2, 16), v("v", 1, 32, 2, 16);
  typename B::View4 out("out", 1, 32, 2, 16);
  typename B::ViewL lse("lse", 1, 2, 32);
  poison(out);
  typename B::exec space;
  EXPECT_EQ(dilated_test::rule_of([&] { plan.forward_window(space, 0, 40, q, out, lse, 0, k, v); }),
            "window.range");
  EXPECT_EQ(dilated_test::rule_of([&] { plan.forward_window(space, 0, 0, q, out, lse, -1, k, v); }),
            "window.range");
  EXPECT_EQ(dilated_test::rule_of([&] { plan.forward_window(space, 2, 0, q, out, lse, 0, k, v); }),
            "window.branch");
  typename B::ViewL bad_lse("lse", 1, 2, 31);
  EXPECT_EQ(dilated_test::rule_of([&] { plan.forward_window(space, 0, 0, q, out, bad_lse, 0, k, v); }),
            "view.shape");
  EXPECT_EQ(dilated_test::rule_of([&] { plan.forward_window(space, 0, 0, q, q, lse, 0, k, v); }),
            "view.aliasing");
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  EXPECT_TRUE(std::isnan(static_cast<double>(h(0, 0, 0, 0))));  // nothing written
}

}  // namespace
}  // namespace dtest
