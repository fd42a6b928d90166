// Helpers of the numerical-stability tests (test_numerics_*.cpp): one
// forward + backward run of the kernels and of the float64 reference on the
// same (rounded) inputs, and the error bounds those tests state.
//
// Bounds are absolute, in units of a "natural magnitude" M of each output
// computed from the inputs (so they stay meaningful when the reference value
// itself cancels to ~0, e.g. the gradients of a saturated softmax):
//   out:  |err| <= (tol_out * g + (e^{2 delta} - 1)) * max|v|
//   lse:  |err| <= tol_lse * g * max(1, max|lse|) + delta
//   grad: |err| <= (tol_grad * g + 4 (e^{2 delta} - 1)) * M_grad
// where tol_* are the per-dtype tolerances of test_harness.hpp (for 16-bit
// storage they include the one rounding of each output, Tol16), g the
// accumulation growth factor (sqrt of the keys per row over 512, at least 1:
// float sums of n rounding errors grow like sqrt(n) - Higham & Mary 2019),
// and delta a bound on the absolute error of one scaled score in dtype T:
//   delta = gamma_{d+2} * scale * d * max|q| * max|k|,  gamma_n = n u / (1 - n u)
// (u the unit roundoff of the accumulation type: 16-bit storage computes in float)
// (a length-d dot product of pre-scaled q, worst case). A softmax whose
// scores move by at most delta moves each probability by a factor within
// e^{+-2 delta}; that gives the out term, and (through P, dP and D) the grad
// term with M_dq = scale * 2A * max|k|, M_dk = scale * 2A * max|q| * C,
// M_dv = max|dout| * C, A = d * max|dout| * max|v| (a bound on |dP|) and C
// the largest column sum of P (from the reference, with dout = 1).
#pragma once

#include <functional>

#include "test_harness.hpp"

namespace dtest {

struct Tensors {
  std::vector<double> q, k, v, dout;
};
struct Results {
  std::vector<double> out, lse, dq, dk, dv;
};

template <class B>
void fill_view(const typename B::View4& view, const std::vector<double>& src) {
  auto h = Kokkos::create_mirror_view(view);
  std::size_t i = 0;
  for (std::size_t b = 0; b < h.extent(0); ++b)
    for (std::size_t p = 0; p < h.extent(1); ++p)
      for (std::size_t hh = 0; hh < h.extent(2); ++hh)
        for (std::size_t x = 0; x < h.extent(3); ++x)
          h(b, p, hh, x) = static_cast<typename B::value>(src[i++]);
  Kokkos::deep_copy(view, h);
}

// Inputs rounded to T: what the kernels see, and so what the reference gets.
template <class T>
Tensors rounded_to(const Tensors& in) {
  Tensors r = in;
  for (std::vector<double>* t : {&r.q, &r.k, &r.v, &r.dout})
    for (double& x : *t) x = static_cast<double>(static_cast<T>(x));
  return r;
}

// Forward, then backward (the default scheme, or the dQ / dK-dV pair that
// device backends run when two_kernel), outputs poisoned with NaN first.
template <class B>
Results run_kernels(const Case& c, const Tensors& in, bool two_kernel = false,
                    bool backward = true) {
  const ProblemShape& s = c.shape;
  typename B::View4 q("q", s.batch, s.seq_len, s.heads, s.head_dim),
      k("k", s.batch, s.seq_len, s.heads, s.head_dim),
      v("v", s.batch, s.seq_len, s.heads, s.head_dim),
      dout("dout", s.batch, s.seq_len, s.heads, s.head_dim),
      out("out", s.batch, s.seq_len, s.heads, s.head_dim),
      dq("dq", s.batch, s.seq_len, s.heads, s.head_dim),
      dk("dk", s.batch, s.seq_len, s.heads, s.head_dim),
      dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  fill_view<B>(q, in.q);
  fill_view<B>(k, in.k);
  fill_view<B>(v, in.v);
  fill_view<B>(dout, in.dout);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  poison(lse);
  dilated::Plan<typename B::exec> plan(c.config, s);
  plan.forward(q, k, v, out, lse);
  if (!backward) {
    Kokkos::fence();
    return Results{from_view(out), lse_from_view(lse), {}, {}, {}};
  }
  if (two_kernel)
    dilated::details::PlanTestAccess::backward_two_kernel(plan, q, k, v, out, lse, dout, dq, dk,
                                                          dv);
  else
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
  Kokkos::fence();
  return Results{from_view(out), lse_from_view(lse), from_view(dq), from_view(dk), from_view(dv)};
}

inline Results run_reference(const Case& c, const Tensors& in, bool with_backward = true) {
  const ProblemShape& s = c.shape;
  Results r;
  r.out.resize(numel(s));
  r.lse.resize(s.batch * s.heads * s.seq_len);
  dilated::reference::forward(c.config, s, in.q.data(), in.k.data(), in.v.data(), r.out.data(),
                              r.lse.data());
  if (with_backward) {
    r.dq.resize(numel(s));
    r.dk.resize(numel(s));
    r.dv.resize(numel(s));
    dilated::reference::backward(c.config, s, in.q.data(), in.k.data(), in.v.data(),
                                 in.dout.data(), r.dq.data(), r.dk.data(), r.dv.data());
  }
  return r;
}

// Fresh uniform inputs: q, k in [-qk, qk), v and dout in [-1, 1).
inline Tensors random_inputs(const ProblemShape& s, std::uint64_t seed, double qk = 1.0) {
  return Tensors{random_vector(numel(s), seed, -qk, qk), random_vector(numel(s), seed + 1, -qk, qk),
                 random_vector(numel(s), seed + 2), random_vector(numel(s), seed + 3)};
}

inline double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double e : x)
    if (std::isfinite(e)) m = std::max(m, std::fabs(e));
  return m;
}

// max |got - want|; infinite if got has a NaN or a non-finite value where
// want has a different one.
inline double max_abs_error(const std::vector<double>& got, const std::vector<double>& want) {
  double e = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i])) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(want[i]) || !std::isfinite(got[i])) {
      if (got[i] != want[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    e = std::max(e, std::fabs(got[i] - want[i]));
  }
  return e;
}

// The smallest positive value of the output type T: a result below half of
// it rounds to 0 whatever the kernel computes (fp16 gradients at softmax
// scale 1e-30), so every bound adds it. bfloat16 has float's exponent range
// but 8 significant bits: 2^-133; fp16: 2^-24.
template <class T>
constexpr double kUnderflow = double(std::numeric_limits<T>::denorm_min());
template <>
constexpr double kUnderflow<EmulatedBf16> = 0x1p-133;
#if DILATED_HAS_HALF_T
template <>
constexpr double kUnderflow<Kokkos::Experimental::half_t> = 0x1p-24;
#endif
#if DILATED_HAS_BHALF_T
template <>
constexpr double kUnderflow<Kokkos::Experimental::bhalf_t> = 0x1p-133;
#endif

// The bounds of the header comment for one case and dtype (each plus
// kUnderflow<T>).
struct Bounds {
  double out, lse, dq, dk, dv;
};

template <class T>
Bounds stated_bounds(const Case& c, const Tensors& in, const Results& ref,
                     double column_sum_max, std::int64_t keys_per_row) {
  // Scores are computed in the accumulation type (float for 16-bit storage,
  // on the rounded inputs): its unit roundoff bounds delta.
  const double u = std::numeric_limits<dilated::details::accum_t<T>>::epsilon() / 2;
  const std::int64_t d = c.shape.head_dim;
  const double scale = dilated::effective_softmax_scale(c.config, d);
  const double gamma = (d + 2) * u / (1 - (d + 2) * u);
  const double delta = gamma * scale * d * max_abs(in.q) * max_abs(in.k);
  const double g = std::max(1.0, std::sqrt(static_cast<double>(keys_per_row) / 512.0));
  const double drift = std::expm1(2 * delta);
  const double a = d * max_abs(in.dout) * max_abs(in.v);
  Bounds b;
  const double eta = kUnderflow<T>;
  b.out = (Tol<T>::out * g + drift) * max_abs(in.v) + eta;
  b.lse = Tol<T>::lse * g * std::max(1.0, max_abs(ref.lse)) + delta;
  const double grad = Tol<T>::grad * g + 4 * drift;
  b.dq = grad * scale * 2 * a * max_abs(in.k) + eta;
  b.dk = grad * scale * 2 * a * max_abs(in.q) * column_sum_max + eta;
  b.dv = grad * max_abs(in.dout) * column_sum_max + eta;
  return b;
}

// C = max_j sum_i P_ij: the reference's dv for dout = 1 (output scale 1).
inline double column_sum_max(const Case& c, const Tensors& in) {
  Tensors ones = in;
  std::fill(ones.dout.begin(), ones.dout.end(), 1.0);
  const ProblemShape& s = c.shape;
  std::vector<double> dq(numel(s)), dk(numel(s)), dv(numel(s));
  dilated::reference::backward(c.config, s, ones.q.data(), ones.k.data(), ones.v.data(),
                               ones.dout.data(), dq.data(), dk.data(), dv.data());
  return max_abs(dv) / dilated::make_pattern(c.config, s).output_scale();
}

// Well-conditioned cases (softmax far from saturation) must also meet the
// main suite's metric, max|err| / max(1, max|ref|) <= Tol<T> * g: the bounds
// above are worst cases and, for gradients, several orders of magnitude
// looser than what the kernels achieve.
template <class T>
void expect_main_tolerances(const Results& got, const Results& ref, double g,
                            const std::string& what) {
  SCOPED_TRACE(what + " (main-suite tolerances x " + std::to_string(g) + ")");
  EXPECT_LE(scaled_error(got.out, ref.out), Tol<T>::out * g);
  EXPECT_LE(scaled_error(got.lse, ref.lse), Tol<T>::lse * g);
  if (!ref.dq.empty()) {
    EXPECT_LE(scaled_error(got.dq, ref.dq), Tol<T>::grad * g);
    EXPECT_LE(scaled_error(got.dk, ref.dk), Tol<T>::grad * g);
    EXPECT_LE(scaled_error(got.dv, ref.dv), Tol<T>::grad * g);
  }
}

// Checks every output of `got` against `ref` with bounds `b`; `what` names the case.
inline void expect_within(const Results& got, const Results& ref, const Bounds& b,
                          const std::string& what) {
  SCOPED_TRACE(what);
  // How much of each bound the error uses (shown with ctest -V): bounds that
  // are far too loose would show here as tiny fractions.
  std::cout << "[ bound    ] " << what << ": error / bound = out "
            << max_abs_error(got.out, ref.out) / b.out << ", lse "
            << max_abs_error(got.lse, ref.lse) / b.lse;
  if (!ref.dq.empty())
    std::cout << ", dq " << max_abs_error(got.dq, ref.dq) / b.dq << ", dk "
              << max_abs_error(got.dk, ref.dk) / b.dk << ", dv "
              << max_abs_error(got.dv, ref.dv) / b.dv;
  std::cout << "\n";
  EXPECT_LE(max_abs_error(got.out, ref.out), b.out) << "out";
  EXPECT_LE(max_abs_error(got.lse, ref.lse), b.lse) << "lse";
  if (!ref.dq.empty()) {
    EXPECT_LE(max_abs_error(got.dq, ref.dq), b.dq) << "dq";
    EXPECT_LE(max_abs_error(got.dk, ref.dk), b.dk) << "dk";
    EXPECT_LE(max_abs_error(got.dv, ref.dv), b.dv) << "dv";
  }
}

}  // namespace dtest
