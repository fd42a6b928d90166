// Numerics at the extremes, forward and backward, on every backend x dtype
// (16-bit storage included: the emulated bfloat16 on host backends, Kokkos'
// half_t/bhalf_t where they are real types, e.g. on Kokkos::Cuda), against
// the float64 reference with the bounds of numerics_harness.hpp: logits of
// ~1e4 before scaling, inputs near fp16's largest value, tiny and huge
// softmax scales, and long sequences (float accumulation error, bound
// growing like sqrt(keys per row)).
#include <map>

#include "numerics_harness.hpp"

namespace dtest {
namespace {

// Long-sequence sizes. Sanitizer builds (10-30x slower) check memory safety
// at shorter lengths; the numerics are checked at full length in Release.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::int64_t kLongForward = 2048, kLongBackward = 1024;
#else
constexpr std::int64_t kLongForward = 16384, kLongBackward = 4096;
#endif

template <class B>
class NumericsExtremes : public ::testing::Test {};
TYPED_TEST_SUITE(NumericsExtremes, AllStorageBackends);

// Runs both backward schemes of case `c` on inputs `in` (rounded to T) and
// checks the stated bounds; `keys` is the largest number of keys of a row.
// `well_conditioned`: also hold the main suite's tolerances.
template <class B>
void check_case(const Case& c, const Tensors& raw, std::int64_t keys, const std::string& what,
                bool well_conditioned = false) {
  using T = typename B::value;
  const Tensors in = rounded_to<T>(raw);
  const Results ref = run_reference(c, in);
  const Bounds b = stated_bounds<T>(c, in, ref, column_sum_max(c, in), keys);
  const std::string name = what + ": " + case_name(c.config, c.shape) + " on " + B::exec::name();
  for (bool two_kernel : {false, true}) {
    const Results got = run_kernels<B>(c, in, two_kernel);
    const std::string n = name + (two_kernel ? " (two-kernel backward)" : " (default backward)");
    expect_within(got, ref, b, n);
    if (well_conditioned) expect_main_tolerances<T>(got, ref, 1.0, n);
  }
}

std::vector<Case> small_cases() {
  AttentionConfig partial = make_config({{48, 1}, {96, 3}}, true);
  partial.allow_partial_segments = true;
  return {Case{make_config({{64, 1}}), {1, 64, 2, 16}},
          Case{make_config({{32, 1}, {64, 2}, {128, 4}}, true), {1, 128, 3, 16}},
          Case{partial, {1, 100, 2, 16}}};
}

// q, k in [-25, 25), head_dim 16: |q.k| reaches ~1e4 before the softmax
// scale (1/4), so the softmax is nearly one-hot; a kernel that forgot to
// subtract the running max would overflow exp() to inf.
TYPED_TEST(NumericsExtremes, LargeLogits) {
  std::uint64_t seed = 9100;
  for (const Case& c : small_cases())
    check_case<TypeParam>(c, random_inputs(c.shape, seed += 10, 25.0), c.shape.seq_len,
                          "scores ~1e4");
}

// Values of magnitude in [60000, 65504] with random signs (65504: fp16's
// largest finite value, which every dtype here holds exactly or rounds to).
std::vector<double> near_half_max(std::size_t n, std::uint64_t seed) {
  std::vector<double> x = random_vector(n, seed, 60000.0, 65504.0);
  const std::vector<double> sign = random_vector(n, seed + 1);
  for (std::size_t i = 0; i < n; ++i) x[i] = sign[i] < 0 ? -x[i] : x[i];
  return x;
}

// 16-bit storage must widen before any arithmetic: q.k of two such rows is
// ~7e10 and one product 4e9, far past fp16's range. Case 1: q and k near the
// maximum with scale 1e-9 (scaled scores up to ~70, a peaked softmax).
// Case 2: v near the maximum, dout of ~1e-2 (out, a convex combination of v
// rows, stays in range; dq, dk reach ~5e3, checked below on the reference,
// so no output has to overflow the dtype).
TYPED_TEST(NumericsExtremes, InputsNearHalfMax) {
  std::uint64_t seed = 9800;
  for (Case c : small_cases()) {
    const std::size_t n = numel(c.shape);
    Tensors big_qk = random_inputs(c.shape, seed += 10);
    big_qk.q = near_half_max(n, seed + 4);
    big_qk.k = near_half_max(n, seed + 6);
    Case tiny = c;
    tiny.config.softmax_scale = 1e-9;
    check_case<TypeParam>(tiny, big_qk, c.shape.seq_len, "q, k near 65504");

    Tensors big_v = random_inputs(c.shape, seed += 10);
    big_v.v = near_half_max(n, seed + 4);
    for (double& x : big_v.dout) x *= 1e-2;
    const Tensors rounded = rounded_to<typename TypeParam::value>(big_v);
    const Results ref = run_reference(c, rounded);
    // Every output representable: out within the (rounded) inputs' range,
    // gradients well below 65504.
    ASSERT_LE(max_abs(ref.out), max_abs(rounded.v));
    for (const std::vector<double>* t : {&ref.dq, &ref.dk, &ref.dv})
      ASSERT_LT(max_abs(*t), 3e4) << "the case must keep every gradient in fp16's range";
    check_case<TypeParam>(c, big_v, c.shape.seq_len, "v near 65504");
  }
}

TYPED_TEST(NumericsExtremes, TinySoftmaxScale) {
  std::uint64_t seed = 9200;
  for (double scale : {1e-6, 1e-30})  // uniform attention; 1e-30 * q is still a normal float
    for (Case c : small_cases()) {
      c.config.softmax_scale = scale;
      check_case<TypeParam>(c, random_inputs(c.shape, seed += 10), c.shape.seq_len,
                            "scale " + std::to_string(scale), /*well_conditioned=*/true);
    }
}

TYPED_TEST(NumericsExtremes, HugeSoftmaxScale) {
  std::uint64_t seed = 9300;
  for (double scale : {30.0, 300.0})  // scaled scores up to ~5e3 from unit inputs
    for (Case c : small_cases()) {
      c.config.softmax_scale = scale;
      check_case<TypeParam>(c, random_inputs(c.shape, seed += 10), c.shape.seq_len,
                            "scale " + std::to_string(scale));
    }
}

// Float sums over n keys lose accuracy like sqrt(n) u: the bound grows with
// g = sqrt(n / 512). Forward at n = 16384 (reference on every 61st row), and
// forward + backward at n = 4096, causal dense; the reference is computed once
// per dtype and process.
TYPED_TEST(NumericsExtremes, LongSequenceForward) {
  using B = TypeParam;
  using T = typename B::value;
  const std::int64_t n = kLongForward;
  const Case c{make_config({{n, 1}}), {1, n, 1, 16}};
  const Tensors in = rounded_to<T>(random_inputs(c.shape, 9400));
  const Results got = run_kernels<B>(c, in, false, /*backward=*/false);
  Results ref;
  ref.lse.assign(n, 0.0);
  const Bounds b = stated_bounds<T>(c, in, ref, 1.0, n);
  double err_out = 0, err_lse = 0;
  std::vector<double> row(16);
  for (std::int64_t p = 0; p < n; p += 61) {
    double lse = 0;
    dilated::reference::forward_row(c.config, c.shape, in.q.data(), in.k.data(), in.v.data(), 0,
                                    p, 0, row.data(), &lse);
    for (int x = 0; x < 16; ++x) err_out = std::max(err_out, std::fabs(got.out[p * 16 + x] - row[x]));
    err_lse = std::max(err_lse, std::fabs(got.lse[p] - lse));
    ASSERT_FALSE(std::isnan(got.out[p * 16]) || std::isnan(got.lse[p])) << "row " << p;
  }
  // lse is ~log(n) here, so max(1, |lse|) = log(n) bounds the reference's.
  const double lse_bound = b.lse + Tol<T>::lse * std::sqrt(n / 512.0) * std::log(double(n));
  EXPECT_LE(err_out, b.out) << B::exec::name();
  EXPECT_LE(err_lse, lse_bound) << B::exec::name();
  this->RecordProperty("max_error_out", std::to_string(err_out));
}

struct LongReference {
  Tensors in;
  Results ref;
  double column_sum_max;
};
template <class T>
const LongReference& long_reference(const Case& c) {
  static std::map<std::int64_t, LongReference> cache;  // one instance per dtype T
  auto it = cache.find(c.shape.seq_len);
  if (it == cache.end()) {
    LongReference r;
    r.in = rounded_to<T>(random_inputs(c.shape, 9500));
    r.ref = run_reference(c, r.in);
    r.column_sum_max = column_sum_max(c, r.in);
    it = cache.emplace(c.shape.seq_len, std::move(r)).first;
  }
  return it->second;
}

TYPED_TEST(NumericsExtremes, LongSequenceForwardBackward) {
  using B = TypeParam;
  using T = typename B::value;
  const std::int64_t n = kLongBackward;
  const Case c{make_config({{n, 1}}, true), {1, n, 1, 16}};
  const LongReference& r = long_reference<T>(c);
  const Bounds b = stated_bounds<T>(c, r.in, r.ref, r.column_sum_max, n);
  const Results got = run_kernels<B>(c, r.in);
  const std::string name = "n = " + std::to_string(n) + " on " + B::exec::name();
  expect_within(got, r.ref, b, name);
  expect_main_tolerances<T>(got, r.ref, std::max(1.0, std::sqrt(n / 512.0)), name);
}

}  // namespace
}  // namespace dtest
