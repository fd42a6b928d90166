// Backward checked against central finite differences of the forward, in
// double: loss = sum(dout * out). Covers the kernels' backward (which the
// reference test already compares) *and* the reference backward itself, so
// neither can be wrong in the same way as the other.
#include "test_harness.hpp"

namespace dtest {
namespace {

std::vector<Case> gradcheck_cases() {
  std::vector<Case> cs;
  for (bool causal : {false, true}) {
    cs.push_back({make_config({{8, 1}, {24, 3}, {12, 5}}, causal), {1, 24, 2, 8}});
    cs.push_back({make_config({{8, 1}, {24, 3}}, causal, HeadMode::HeadGroups), {2, 24, 3, 4}});
    AttentionConfig drop = make_config({{8, 1}, {24, 2}}, causal);
    drop.dropout_p = 0.3;
    drop.dropout_seed = 99;
    cs.push_back({drop, {1, 24, 2, 4}});
    AttentionConfig partial = make_config({{16, 1}, {20, 3}}, causal);
    partial.allow_partial_segments = true;
    cs.push_back({partial, {1, 22, 1, 4}});
  }
  return cs;
}

double loss_of(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
               const std::vector<double>& v, const std::vector<double>& dout) {
  std::vector<double> out(q.size()), lse(c.shape.batch * c.shape.heads * c.shape.seq_len);
  dilated::reference::forward(c.config, c.shape, q.data(), k.data(), v.data(), out.data(),
                              lse.data());
  double l = 0;
  for (std::size_t i = 0; i < out.size(); ++i) l += out[i] * dout[i];
  return l;
}

TEST(GradCheck, ReferenceBackwardMatchesFiniteDifferences) {
  for (const Case& c : gradcheck_cases()) {
    SCOPED_TRACE(case_name(c.config, c.shape));
    const std::size_t n = numel(c.shape);
    std::vector<double> in[3] = {random_vector(n, 41), random_vector(n, 42), random_vector(n, 43)};
    const auto dout = random_vector(n, 44);
    std::vector<double> g[3] = {std::vector<double>(n), std::vector<double>(n),
                                std::vector<double>(n)};
    dilated::reference::backward(c.config, c.shape, in[0].data(), in[1].data(), in[2].data(),
                                 dout.data(), g[0].data(), g[1].data(), g[2].data());
    const double eps = 1e-6;
    double worst = 0;
    for (int t = 0; t < 3; ++t)
      for (std::size_t i = 0; i < n; ++i) {
        const double keep = in[t][i];
        in[t][i] = keep + eps;
        const double lp = loss_of(c, in[0], in[1], in[2], dout);
        in[t][i] = keep - eps;
        const double lm = loss_of(c, in[0], in[1], in[2], dout);
        in[t][i] = keep;
        worst = std::max(worst, std::fabs((lp - lm) / (2 * eps) - g[t][i]));
      }
    EXPECT_LT(worst, 1e-7);
  }
}

// The portable kernels' backward, differentiated numerically through the
// portable kernels' own forward (on the default host backend, double).
TEST(GradCheck, KernelBackwardMatchesFiniteDifferencesOfKernelForward) {
  using B = Backend<Kokkos::DefaultHostExecutionSpace, double>;
  for (const Case& c : gradcheck_cases()) {
    SCOPED_TRACE(case_name(c.config, c.shape));
    const ProblemShape& s = c.shape;
    const std::size_t n = numel(s);
    dilated::Plan<B::exec> plan(c.config, s);
    B::View4 t[3] = {to_view<B>(random_vector(n, 51), s), to_view<B>(random_vector(n, 52), s),
                     to_view<B>(random_vector(n, 53), s)};
    auto dout = to_view<B>(random_vector(n, 54), s);
    B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
    B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
    B::View4 g[3] = {B::View4("dq", s.batch, s.seq_len, s.heads, s.head_dim),
                     B::View4("dk", s.batch, s.seq_len, s.heads, s.head_dim),
                     B::View4("dv", s.batch, s.seq_len, s.heads, s.head_dim)};
    plan.forward(t[0], t[1], t[2], out, lse);
    plan.backward(t[0], t[1], t[2], out, lse, dout, g[0], g[1], g[2]);
    Kokkos::fence();
    auto loss = [&]() {
      plan.forward(t[0], t[1], t[2], out, lse);
      Kokkos::fence();
      double l = 0;
      for (std::int64_t b = 0; b < s.batch; ++b)
        for (std::int64_t p = 0; p < s.seq_len; ++p)
          for (std::int64_t h = 0; h < s.heads; ++h)
            for (std::int64_t x = 0; x < s.head_dim; ++x) l += out(b, p, h, x) * dout(b, p, h, x);
      return l;
    };
    const double eps = 1e-6;
    double worst = 0;
    for (int which = 0; which < 3; ++which)
      for (std::int64_t b = 0; b < s.batch; ++b)
        for (std::int64_t p = 0; p < s.seq_len; ++p)
          for (std::int64_t h = 0; h < s.heads; ++h)
            for (std::int64_t x = 0; x < s.head_dim; ++x) {
              double& e = t[which](b, p, h, x);
              const double keep = e;
              e = keep + eps;
              const double lp = loss();
              e = keep - eps;
              const double lm = loss();
              e = keep;
              worst = std::max(worst, std::fabs((lp - lm) / (2 * eps) - g[which](b, p, h, x)));
            }
    EXPECT_LT(worst, 1e-7);
  }
}

}  // namespace
}  // namespace dtest
