// Shared helpers of the unit tests: the backend x dtype matrix every kernel
// test runs on (Kokkos Kernels style), random inputs, poisoning, conversion to
// the float64 reference's layout, and tolerance checks.
#pragma once

#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dilated_attention.hpp>

#include "emulated_bf16.hpp"

namespace dtest {

using dilated::AttentionConfig;
using dilated::Branch;
using dilated::HeadMode;
using dilated::ProblemShape;

// Every execution space this Kokkos build enables, crossed with both dtypes.
template <class Exec, class T>
struct Backend {
  using exec = Exec;
  using value = T;
  using acc = dilated::details::accum_t<T>;
  using mem = typename Exec::memory_space;
  using View4 = Kokkos::View<T****, Kokkos::LayoutRight, mem>;
  using ViewL = Kokkos::View<acc***, Kokkos::LayoutRight, mem>;
};
template <class... Ts>
struct List {};
template <class... Ls>
struct Cat;
template <class... A>
struct Cat<List<A...>> {
  using type = List<A...>;
};
template <class... A, class... B, class... Rest>
struct Cat<List<A...>, List<B...>, Rest...> {
  using type = typename Cat<List<A..., B...>, Rest...>::type;
};
template <class L>
struct ToTypes;
template <class... A>
struct ToTypes<List<A...>> {
  using type = ::testing::Types<A...>;
};
#if defined(KOKKOS_ENABLE_SERIAL)
using SerialBackends = List<Backend<Kokkos::Serial, double>, Backend<Kokkos::Serial, float>>;
#else
using SerialBackends = List<>;
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
using OpenMPBackends = List<Backend<Kokkos::OpenMP, double>, Backend<Kokkos::OpenMP, float>>;
#else
using OpenMPBackends = List<>;
#endif
#if defined(KOKKOS_ENABLE_CUDA)
using CudaBackends = List<Backend<Kokkos::Cuda, double>, Backend<Kokkos::Cuda, float>>;
#else
using CudaBackends = List<>;
#endif
using AllBackends =
    typename ToTypes<typename Cat<SerialBackends, OpenMPBackends, CudaBackends>::type>::type;

// 16-bit storage on an execution space: Kokkos' half_t and bhalf_t where this
// Kokkos makes them real types (dilated/details/storage_types.hpp), and on
// host spaces the emulated bfloat16 (emulated_bf16.hpp), so every build runs
// the 16-bit paths.
template <class Exec>
struct Storage16 {
  using kokkos_types = typename Cat<
#if DILATED_HAS_HALF_T
      List<Backend<Exec, Kokkos::Experimental::half_t>>,
#endif
#if DILATED_HAS_BHALF_T
      List<Backend<Exec, Kokkos::Experimental::bhalf_t>>,
#endif
      List<>>::type;
  using type = typename Cat<kokkos_types, std::conditional_t<dilated::details::is_host_space<Exec>(),
                                                             List<Backend<Exec, EmulatedBf16>>,
                                                             List<>>>::type;
};
#if defined(KOKKOS_ENABLE_SERIAL)
using SerialBackends16 = typename Storage16<Kokkos::Serial>::type;
#else
using SerialBackends16 = List<>;
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
using OpenMPBackends16 = typename Storage16<Kokkos::OpenMP>::type;
#else
using OpenMPBackends16 = List<>;
#endif
#if defined(KOKKOS_ENABLE_CUDA)
using CudaBackends16 = typename Storage16<Kokkos::Cuda>::type;
#else
using CudaBackends16 = List<>;
#endif
// AllBackends plus 16-bit storage: the forward and backward suites.
using AllStorageBackends = typename ToTypes<
    typename Cat<SerialBackends, OpenMPBackends, CudaBackends, SerialBackends16, OpenMPBackends16,
                 CudaBackends16>::type>::type;

// Tolerances per dtype, against the float64 reference, scaled by max(1, max|ref|).
template <class T>
struct Tol;
template <>
struct Tol<double> {
  static constexpr double out = 1e-11, lse = 1e-11, grad = 1e-10;
};
template <>
struct Tol<float> {
  static constexpr double out = 3e-5, lse = 1e-5, grad = 3e-4;
};
// 16-bit storage with `bits` significant bits (8: bfloat16, 11: half). The
// kernels compute in float on the rounded inputs, which the reference sees
// too, so the error is float's plus what rounding the outputs adds, with
// u = 2^-bits (round to nearest) and |x| <= max|ref| (scaled_error's scale):
//   out:  rounded once: u.
//   lse:  float, computed from the same rounded inputs: float's.
//   grad: rounded once (u), plus backward's delta_i = sum_x dout_ix out_ix
//         read from the rounded out: its D rounding errors (<= u |out_ix|,
//         independent signs) sum to ~ sqrt(D) u |out| |dout|, and dq_i =
//         scale sum_j P_ij (dP_ij - delta_i) k_j takes it times scale =
//         1/sqrt(D) times a P-average of k (|.| <= max|k| <= 1): <= u more.
//         2u in all (the emulated bfloat16 measured <= 0.76u on this matrix).
template <int bits>
struct Tol16 {
  static constexpr double u = 1.0 / (1 << bits);
  static constexpr double out = u + Tol<float>::out, lse = Tol<float>::lse,
                          grad = 2 * u + Tol<float>::grad;
};
template <>
struct Tol<EmulatedBf16> : Tol16<8> {};
#if DILATED_HAS_HALF_T
template <>
struct Tol<Kokkos::Experimental::half_t> : Tol16<11> {};
#endif
#if DILATED_HAS_BHALF_T
template <>
struct Tol<Kokkos::Experimental::bhalf_t> : Tol16<8> {};
#endif

// A host vector of uniform[-1, 1) values, fresh per seed.
inline std::vector<double> random_vector(std::size_t n, std::uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline std::size_t numel(const ProblemShape& s) {
  return static_cast<std::size_t>(s.batch * s.seq_len * s.heads * s.head_dim);
}

// Device View from a [B, N, H, D] host vector. The values are rounded to T,
// and `rounded` (if given) receives exactly what the kernel sees, so the
// reference runs on identical inputs.
template <class B>
typename B::View4 to_view(const std::vector<double>& src, const ProblemShape& s,
                          std::vector<double>* rounded = nullptr, const char* label = "t") {
  typename B::View4 v(std::string(label), s.batch, s.seq_len, s.heads, s.head_dim);
  auto h = Kokkos::create_mirror_view(v);
  std::size_t i = 0;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t p = 0; p < s.seq_len; ++p)
      for (std::int64_t hh = 0; hh < s.heads; ++hh)
        for (std::int64_t x = 0; x < s.head_dim; ++x)
          h(b, p, hh, x) = static_cast<typename B::value>(src[i++]);
  Kokkos::deep_copy(v, h);
  if (rounded) {
    rounded->resize(src.size());
    for (std::size_t j = 0; j < src.size(); ++j)
      (*rounded)[j] = static_cast<double>(static_cast<typename B::value>(src[j]));
  }
  return v;
}

// One layer's tensors: random q, k, v, dout (seeds seed .. seed + 3) and
// unwritten out, lse, dq, dk, dv, for tests that drive whole calls (memory,
// concurrency) rather than compare against the reference.
template <class B>
struct LayerViews {
  typename B::View4 q, k, v, dout, out, dq, dk, dv;
  typename B::ViewL lse;
  LayerViews(const ProblemShape& s, std::uint64_t seed)
      : q(to_view<B>(random_vector(numel(s), seed), s)),
        k(to_view<B>(random_vector(numel(s), seed + 1), s)),
        v(to_view<B>(random_vector(numel(s), seed + 2), s)),
        dout(to_view<B>(random_vector(numel(s), seed + 3), s)),
        out("out", s.batch, s.seq_len, s.heads, s.head_dim),
        dq("dq", s.batch, s.seq_len, s.heads, s.head_dim),
        dk("dk", s.batch, s.seq_len, s.heads, s.head_dim),
        dv("dv", s.batch, s.seq_len, s.heads, s.head_dim),
        lse("lse", s.batch, s.heads, s.seq_len) {}
};

template <class View4>
std::vector<double> from_view(const View4& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  out.reserve(h.size());
  for (std::size_t b = 0; b < h.extent(0); ++b)
    for (std::size_t p = 0; p < h.extent(1); ++p)
      for (std::size_t hh = 0; hh < h.extent(2); ++hh)
        for (std::size_t x = 0; x < h.extent(3); ++x)
          out.push_back(static_cast<double>(h(b, p, hh, x)));
  return out;
}

template <class ViewL>
std::vector<double> lse_from_view(const ViewL& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  for (std::size_t b = 0; b < h.extent(0); ++b)
    for (std::size_t hh = 0; hh < h.extent(1); ++hh)
      for (std::size_t p = 0; p < h.extent(2); ++p) out.push_back(h(b, hh, p));
  return out;
}

// Fill with a value no kernel would produce, so an unwritten element shows.
template <class V>
void poison(const V& v, double value = std::numeric_limits<double>::quiet_NaN()) {
  Kokkos::deep_copy(v, static_cast<typename V::non_const_value_type>(value));
}

// Max |got - want| / max(1, max|want|); -inf == -inf counts as equal, and any
// NaN in got (e.g. left-over poison) makes the error infinite.
inline double scaled_error(const std::vector<double>& got, const std::vector<double>& want) {
  double scale = 1.0, err = 0.0;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i])) return std::numeric_limits<double>::infinity();
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      if (got[i] != want[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    err = std::max(err, std::fabs(got[i] - want[i]));
  }
  return err / scale;
}

// Fresh random q, k, v, dout (seeds seed .. seed + 3) as Views of backend B,
// and the same values rounded to B's dtype - exactly what the kernels see -
// for the float64 reference (qd, kd, vd, dod).
template <class B>
struct RandomInputs {
  std::vector<double> qd, kd, vd, dod;  // declared first: the Views fill them
  typename B::View4 q, k, v, dout;
  RandomInputs(const ProblemShape& s, std::uint64_t seed)
      : q(to_view<B>(random_vector(numel(s), seed), s, &qd, "q")),
        k(to_view<B>(random_vector(numel(s), seed + 1), s, &kd, "k")),
        v(to_view<B>(random_vector(numel(s), seed + 2), s, &vd, "v")),
        dout(to_view<B>(random_vector(numel(s), seed + 3), s, &dod, "dout")) {}
};

// dq, dk, dv against the float64 reference gradients of `in`, within
// Tol<T>::grad.
template <class B, class V>
void expect_reference_gradients(const AttentionConfig& c, const ProblemShape& s,
                                const RandomInputs<B>& in, const V& dq, const V& dk, const V& dv) {
  using T = typename B::value;
  std::vector<double> rdq(numel(s)), rdk(numel(s)), rdv(numel(s));
  dilated::reference::backward(c, s, in.qd.data(), in.kd.data(), in.vd.data(), in.dod.data(),
                               rdq.data(), rdk.data(), rdv.data());
  EXPECT_LE(scaled_error(from_view(dq), rdq), Tol<T>::grad) << "dq";
  EXPECT_LE(scaled_error(from_view(dk), rdk), Tol<T>::grad) << "dk";
  EXPECT_LE(scaled_error(from_view(dv), rdv), Tol<T>::grad) << "dv";
}

inline std::string case_name(const AttentionConfig& c, const ProblemShape& s) {
  std::ostringstream os;
  os << dilated::describe(c) << " B=" << s.batch << " N=" << s.seq_len << " H=" << s.heads
     << " d=" << s.head_dim;
  if (c.softmax_scale > 0) os << " scale=" << c.softmax_scale;
  return os.str();
}

struct Case {
  AttentionConfig config;
  ProblemShape shape;
};

inline AttentionConfig make_config(std::vector<Branch> br, bool causal = false,
                                   HeadMode mode = HeadMode::LongNet) {
  AttentionConfig c;
  c.branches = std::move(br);
  c.causal = causal;
  c.head_mode = mode;
  return c;
}

// The forward/backward correctness matrix: 1..5 branches, r up to 16, w % r
// != 0, causal and not, both head modes, head_dim 16..256, odd batch/heads,
// multi-tile segments, partial segments, custom scale, dropout, duplicates.
inline std::vector<Case> correctness_cases() {
  std::vector<Case> cs;
  auto add = [&](AttentionConfig c, ProblemShape s) { cs.push_back(Case{std::move(c), s}); };
  for (bool causal : {false, true}) {
    add(make_config({{64, 1}}, causal), {1, 64, 2, 32});                               // dense
    add(make_config({{16, 1}, {32, 2}, {64, 4}}, causal), {2, 128, 4, 64});             // LongNet
    add(make_config({{12, 5}, {24, 6}, {48, 7}}, causal), {1, 96, 5, 24});              // w % r != 0
    add(make_config({{32, 1}, {64, 16}, {16, 16}}, causal), {1, 128, 17, 16});          // r = 16
    add(make_config({{8, 1}, {16, 2}, {32, 4}, {64, 6}, {128, 12}}, causal), {3, 128, 3, 128});
    add(make_config({{16, 2}, {32, 4}}, causal), {1, 64, 3, 16});                      // unkept rows
    add(make_config({{16, 1}, {32, 2}, {64, 4}}, causal, HeadMode::HeadGroups), {1, 64, 7, 32});
    add(make_config({{300, 2}}, causal), {1, 300, 2, 16});                             // 3 tiles/segment
    add(make_config({{200, 1}, {400, 3}}, causal), {1, 400, 1, 20});                   // multi-tile
    add(make_config({{32, 2}, {32, 2}}, causal), {1, 64, 2, 16});                      // duplicate
    AttentionConfig partial = make_config({{32, 1}, {48, 3}}, causal);
    partial.allow_partial_segments = true;
    add(partial, {2, 100, 3, 16});
    AttentionConfig big_d = make_config({{32, 2}, {64, 1}}, causal);
    big_d.softmax_scale = 0.05;
    add(big_d, {1, 64, 1, 256});
    add(make_config({{16, 1}, {48, 3}}, causal), {1, 48, 2, 100});                     // d = 100
    AttentionConfig drop = make_config({{16, 1}, {32, 2}, {64, 4}}, causal);
    drop.dropout_p = 0.25;
    drop.dropout_seed = 0x5eed;
    add(drop, {2, 64, 3, 16});
    // head_dim 64: dropout through the lean staging of the float GPU forward
    // (pipe256l runs for whole float4 rows of head_dim 32/64/128 only).
    add(drop, {1, 128, 2, 64});
    AttentionConfig drop_groups = make_config({{16, 1}, {32, 3}}, causal, HeadMode::HeadGroups);
    drop_groups.dropout_p = 0.4;
    drop_groups.dropout_seed = 7;
    add(drop_groups, {1, 64, 5, 16});
  }
  return cs;
}

}  // namespace dtest
