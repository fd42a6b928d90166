// dilated/details/nonfinite_rows.hpp - keeping NaN / inf inputs to the rows
// that attend to them.
//
// A tile product multiplies every entry of a probability (or dS) tile with
// every row of the streamed operand, including the entries a causal mask set
// to 0; 0 * NaN and 0 * inf are NaN, so one non-finite input row would reach
// queries (or keys) that never attend to it. The kernels therefore take a
// non-finite row out of the product (zeroed in scratch, flagged) and add its
// contribution back afterwards for the visible pairs only. The check costs one
// multiply-add per loaded element; the fix-up runs only when a tile has a
// flagged row. Contract and tests: README "Numerics", test_numerics_nonfinite.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>

namespace dilated {
namespace details {

// 1 if row[0, n) holds a NaN or an infinity, else 0 (x * 0 is 0 exactly for
// every finite x and NaN otherwise; written so that it vectorises).
template <class Acc>
KOKKOS_INLINE_FUNCTION Acc nonfinite_flag(const Acc* row, std::int64_t n) {
  Acc z = 0;
  for (std::int64_t x = 0; x < n; ++x) z += row[x] * Acc(0);
  return z == Acc(0) ? Acc(0) : Acc(1);
}

// Zeroes row[0, n) if it is flagged; returns the flag.
template <class Acc>
KOKKOS_INLINE_FUNCTION Acc take_out_if_nonfinite(Acc* row, std::int64_t n) {
  const Acc f = nonfinite_flag(row, n);
  if (f != Acc(0))
    for (std::int64_t x = 0; x < n; ++x) row[x] = 0;
  return f;
}

// Whether any of flags[0, n) is set.
template <class Acc>
KOKKOS_INLINE_FUNCTION bool any_flag(const Acc* flags, std::int64_t n) {
  Acc s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += flags[j];
  return s != Acc(0);
}

}  // namespace details
}  // namespace dilated
