// Non-finite inputs and fully masked rows, forward and backward (both
// schemes), on every backend x dtype, 16-bit storage included (the emulated
// bfloat16 on host backends, Kokkos' half_t/bhalf_t where they are real).
//
// The contract (README, "Numerics"): every output element is non-finite
// exactly where the float64 reference's is, and within the dtype's
// tolerance of it elsewhere. The reference touches only attended
// (query, key) pairs, so a NaN or inf reaches only the rows that attend to
// it: a NaN in key j's K or V row makes NaN the outputs of exactly the
// queries attending key j (and, in backward, the gradients those queries
// feed), never a neighbour that a causal mask or dilation hides from it.
#include "numerics_harness.hpp"

namespace dtest {
namespace {

template <class B>
class NumericsNonFinite : public ::testing::Test {};
TYPED_TEST_SUITE(NumericsNonFinite, AllStorageBackends);

// Same finiteness pattern as the reference, and within tol * max(1, max|ref|)
// where both are finite; never every element non-finite (the injected value
// must stay local). Returns the number of non-finite reference elements.
std::size_t expect_contract(const std::vector<double>& got, const std::vector<double>& want,
                            double tol, const std::string& name) {
  const double scale = std::max(1.0, max_abs(want));
  std::size_t nonfinite = 0, mismatches = 0, first = 0;
  double err = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const bool wf = std::isfinite(want[i]), gf = std::isfinite(got[i]);
    nonfinite += !wf;
    if (wf != gf) {
      if (mismatches++ == 0) first = i;
      continue;
    }
    if (wf) err = std::max(err, std::fabs(got[i] - want[i]));
  }
  EXPECT_EQ(mismatches, 0u) << name << ": finiteness differs from the reference at " << mismatches
                            << " elements, first at flat index " << first << " (got "
                            << got[first] << ", reference " << want[first] << ")";
  EXPECT_LE(err / scale, tol) << name;
  EXPECT_LT(nonfinite, want.size()) << name << ": the injected value reached every element";
  return nonfinite;
}

template <class B>
void check_injection(const Case& c, const Tensors& raw, const std::string& what) {
  using T = typename B::value;
  const Tensors in = rounded_to<T>(raw);
  const Results ref = run_reference(c, in);
  for (bool two_kernel : {false, true}) {
    const std::string name = what + " / " + case_name(c.config, c.shape) + " on " +
                             B::exec::name() + (two_kernel ? " (two-kernel backward)" : "");
    const Results got = run_kernels<B>(c, in, two_kernel);
    const std::size_t in_out = expect_contract(got.out, ref.out, Tol<T>::out, name + " out");
    expect_contract(got.lse, ref.lse, Tol<T>::lse, name + " lse");
    const std::size_t in_grads = expect_contract(got.dq, ref.dq, Tol<T>::grad, name + " dq") +
                                 expect_contract(got.dk, ref.dk, Tol<T>::grad, name + " dk") +
                                 expect_contract(got.dv, ref.dv, Tol<T>::grad, name + " dv");
    // The test must be able to fail: the value reaches something.
    if (what.rfind("dout", 0) != 0) {
      EXPECT_GT(in_out, 0u) << name << ": out never non-finite";
    }
    EXPECT_GT(in_grads, 0u) << name << ": gradients never non-finite";
  }
}

std::vector<Case> cases() {
  return {
      // causal + dilation: key 70 is hidden from the queries before it in its
      // 64-key tile, and from heads whose offsets skip it
      Case{make_config({{32, 1}, {64, 2}, {128, 4}}, true), {1, 128, 3, 16}},
      Case{make_config({{64, 1}, {128, 2}}), {2, 128, 2, 16}},  // non-causal, two segments
      // head_dim 32: whole float4 rows, which Plan<Kokkos::Cuda>'s default
      // GPU forward (pipe256l) stages with its own non-finite V check
      Case{make_config({{64, 1}, {128, 2}}, true), {1, 128, 2, 32}},
  };
}

// Which input an injection goes into. (An index, not a pointer to member:
// nvcc's front end re-emits `T C::*m` as `T (C::*m)`, which g++ then warns
// about under -Wparentheses.)
enum class Input { q, k, v, dout };
std::vector<double>& input(Tensors& t, Input which) {
  switch (which) {
    case Input::q: return t.q;
    case Input::k: return t.k;
    case Input::v: return t.v;
    default: return t.dout;
  }
}

struct Injection {
  const char* name;
  Input tensor;
  double value;
};

TYPED_TEST(NumericsNonFinite, PropagatesOnlyToRowsThatAttend) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Injection injections[] = {
      {"k NaN", Input::k, nan},     {"v NaN", Input::v, nan},
      {"q NaN", Input::q, nan},     {"dout NaN", Input::dout, nan},
      {"k +inf", Input::k, inf},    {"k -inf", Input::k, -inf},
      {"v +inf", Input::v, inf},    {"v -inf", Input::v, -inf},
  };
  std::uint64_t seed = 9600;
  for (const Case& c : cases())
    for (const Injection& inj : injections) {
      Tensors in = random_inputs(c.shape, seed += 10);
      // One element of (batch 0, position 70, head 1), component 3.
      const std::size_t at =
          ((0 * c.shape.seq_len + 70) * c.shape.heads + 1) * c.shape.head_dim + 3;
      input(in, inj.tensor)[at] = inj.value;
      check_injection<TypeParam>(c, in, inj.name);
    }
}

// Rows that attend to nothing (no branch keeps (p, h): causal + dilation
// without r = 1, and offsets that keep no position of a short partial last
// segment) give out 0, lse -inf, and contribute nothing to any gradient,
// even when their dout is NaN.
TYPED_TEST(NumericsNonFinite, FullyMaskedRowsStayZero) {
  using B = TypeParam;
  using T = typename B::value;
  AttentionConfig partial = make_config({{12, 5}, {20, 3}}, true);
  partial.allow_partial_segments = true;  // N = 41: last segments of 5 and 1 tokens
  const Case all[] = {Case{make_config({{16, 2}, {32, 4}}, true), {1, 64, 3, 16}},
                      Case{partial, {2, 41, 4, 16}}};
  std::uint64_t seed = 9700;
  for (const Case& c : all) {
    Tensors in = rounded_to<T>(random_inputs(c.shape, seed += 10));
    const Results fwd = run_reference(c, in, false);
    std::size_t masked = 0;
    const ProblemShape& s = c.shape;
    for (std::int64_t b = 0; b < s.batch; ++b)
      for (std::int64_t h = 0; h < s.heads; ++h)
        for (std::int64_t p = 0; p < s.seq_len; ++p)
          if (std::isinf(fwd.lse[(b * s.heads + h) * s.seq_len + p])) {
            ++masked;
            for (std::int64_t x = 0; x < s.head_dim; ++x)
              in.dout[((b * s.seq_len + p) * s.heads + h) * s.head_dim + x] =
                  std::numeric_limits<double>::quiet_NaN();
          }
    ASSERT_GT(masked, 0u) << case_name(c.config, s);
    const Results ref = run_reference(c, in);
    for (bool two_kernel : {false, true}) {
      SCOPED_TRACE(case_name(c.config, s) + " on " + B::exec::name() +
                   (two_kernel ? " (two-kernel backward)" : ""));
      const Results got = run_kernels<B>(c, in, two_kernel);
      EXPECT_LE(scaled_error(got.out, ref.out), Tol<T>::out);
      EXPECT_LE(scaled_error(got.lse, ref.lse), Tol<T>::lse);  // -inf must match -inf
      EXPECT_LE(scaled_error(got.dq, ref.dq), Tol<T>::grad);   // any NaN fails
      EXPECT_LE(scaled_error(got.dk, ref.dk), Tol<T>::grad);
      EXPECT_LE(scaled_error(got.dv, ref.dv), Tol<T>::grad);
    }
  }
}

}  // namespace
}  // namespace dtest
