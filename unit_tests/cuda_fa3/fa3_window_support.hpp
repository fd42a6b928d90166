// Helpers of the windowed-call tests of cuda_fa3 (test_fa3_window*.cpp): the
// cut of a sequence into windows, device tensors viewed at a window, and the
// merge identity the windowed calls start from.
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

}  // namespace fa3test
