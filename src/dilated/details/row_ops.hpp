// dilated/details/row_ops.hpp - max / sum over a row of a score tile, written
// lane-wise so compilers vectorise them without reassociating floating point.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>

namespace dilated {
namespace details {

constexpr int kRowLanes = 16;

// n must be a multiple of kRowLanes.
template <class Acc>
KOKKOS_INLINE_FUNCTION Acc row_max(const Acc* x, std::int64_t n, Acc init) {
  Acc lane[kRowLanes];
  for (int l = 0; l < kRowLanes; ++l) lane[l] = init;
  for (std::int64_t j = 0; j < n; j += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
  Acc m = lane[0];
  for (int l = 1; l < kRowLanes; ++l) m = lane[l] > m ? lane[l] : m;
  return m;
}

template <class Acc>
KOKKOS_INLINE_FUNCTION Acc row_sum(const Acc* x, std::int64_t n) {
  Acc lane[kRowLanes];
  for (int l = 0; l < kRowLanes; ++l) lane[l] = 0;
  for (std::int64_t j = 0; j < n; j += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) lane[l] += x[j + l];
  Acc s = 0;
  for (int l = 0; l < kRowLanes; ++l) s += lane[l];
  return s;
}

}  // namespace details
}  // namespace dilated
