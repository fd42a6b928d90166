// Helpers of the windowed-call tests of cuda_fa3 (test_fa3_window*.cpp): the
// cut of a sequence into windows, device tensors viewed at a window, the
// merge identity the windowed calls start from, and the walk over every
// (branch, query window, key window) pair that src/dist's ring performs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fa3_test_support.hpp"

namespace fa3test {

struct Window {
  std::int64_t begin, len;
};

// [0, n) cut at the given fractions of n (each window at least one row).
inline std::vector<Window> windows(std::int64_t n, const std::vector<double>& cuts) {
  std::vector<std::int64_t> at = {0};
  for (double f : cuts) at.push_back(std::max<std::int64_t>(at.back() + 1, std::int64_t(f * double(n))));
  at.push_back(n);
  std::vector<Window> w;
  for (std::size_t i = 0; i + 1 < at.size(); ++i) w.push_back({at[i], at[i + 1] - at[i]});
  return w;
}

// Dense [b, s, h, d] device tensors and [b, h, s] float ones, viewed at a window.
struct Layout {
  dilated::ProblemShape s;
  std::int64_t sb() const { return s.seq_len * s.heads * s.head_dim; }
  std::int64_t ss() const { return s.heads * s.head_dim; }
  dilated::cuda_fa3::Tensor in(const std::uint16_t* p, const Window& w) const {
    return dilated::cuda_fa3::Tensor{p + w.begin * ss(), sb(), ss(), s.head_dim, 1};
  }
  dilated::cuda_fa3::MutableTensor out(std::uint16_t* p, const Window& w) const {
    return dilated::cuda_fa3::MutableTensor{p + w.begin * ss(), sb(), ss(), s.head_dim, 1};
  }
  dilated::cuda_fa3::LseTensor rows(float* p, const Window& w) const {
    return dilated::cuda_fa3::LseTensor{p + w.begin, s.heads * s.seq_len, s.seq_len, 1};
  }
};

inline std::vector<std::uint16_t> filled(std::size_t n, float x, DType t) {
  return std::vector<std::uint16_t>(n, to_half_bits(x, t));
}

// forward_window for every (branch, query window, key window): out and lse
// must hold the merge identity (0, -inf) before the first call.
inline void forward_all_windows(const dilated::cuda_fa3::Plan& plan, const Layout& L, int branches,
                                const std::vector<Window>& qws, const std::vector<Window>& kws,
                                const std::uint16_t* q, const std::uint16_t* k, const std::uint16_t* v,
                                std::uint16_t* out, float* lse) {
  for (int br = 0; br < branches; ++br)
    for (const Window& qw : qws)
      for (const Window& kw : kws)
        plan.forward_window(br, qw.begin, qw.len, L.in(q, qw), L.out(out, qw), L.rows(lse, qw), kw.begin, kw.len,
                            L.in(k, kw), L.in(v, kw), nullptr);
}

// backward_delta per query window, then backward_window for every (branch,
// query window, key window), adding into dq, dk, dv (zeroed by the caller).
inline void backward_all_windows(const dilated::cuda_fa3::Plan& plan, const Layout& L, int branches,
                                 const std::vector<Window>& qws, const std::vector<Window>& kws,
                                 const std::uint16_t* q, const std::uint16_t* k, const std::uint16_t* v,
                                 const std::uint16_t* out, const std::uint16_t* dout, float* lse, float* delta,
                                 std::uint16_t* dq, std::uint16_t* dk, std::uint16_t* dv) {
  for (const Window& qw : qws) plan.backward_delta(L.in(out, qw), L.in(dout, qw), qw.len, L.rows(delta, qw), nullptr);
  for (int br = 0; br < branches; ++br)
    for (const Window& qw : qws)
      for (const Window& kw : kws)
        plan.backward_window(br, qw.begin, qw.len, L.in(q, qw), L.in(dout, qw), L.rows(lse, qw), L.rows(delta, qw),
                             L.out(dq, qw), kw.begin, kw.len, L.in(k, kw), L.in(v, kw), L.out(dk, kw),
                             L.out(dv, kw), nullptr);
}

}  // namespace fa3test
