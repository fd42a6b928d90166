// dilated/details/fast_exp.hpp - exp() that vectorises.
//
// libm's expf is a scalar call; in the softmax of a 64-key tile it would cost
// as much as the tile's matrix work. exp(x) = 2^n * 2^f with n = round(x /
// ln 2) and a degree-6 polynomial for 2^f on [-1/2, 1/2] (relative error
// ~1.2e-7, i.e. about 1 ulp in float). -inf and x < -87.3 give 0; NaN stays NaN.
#pragma once

#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dilated {
namespace details {

KOKKOS_INLINE_FUNCTION float fast_exp(float x) {
  const bool underflow = x < -87.3f;
  const float xc = x > 88.0f ? 88.0f : (underflow ? 0.0f : x);  // NaN passes through
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa bits
  // hold n, so no float->int conversion is needed (conversions may trap, which
  // stops GCC from vectorising without -fno-trapping-math).
  const float shifted = xc * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  std::int32_t nbits;
  std::memcpy(&nbits, &shifted, sizeof nbits);
  // f = x - n ln2 with ln2 split in two (Cody-Waite) so f keeps full precision.
  const float f = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  // e^f for |f| <= ln2/2: Taylor to degree 6.
  float p = 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  // 2^n, in unsigned arithmetic: for a NaN x, nbits may be negative, and a
  // left shift of a negative int is undefined (found by fuzz/fuzz_plan).
  const std::uint32_t bits =
      ((static_cast<std::uint32_t>(nbits) - 0x4B400000u) + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float r = p * scale;
  return underflow ? 0.0f : r;
}

KOKKOS_INLINE_FUNCTION double fast_exp(double x) { return ::exp(x); }

}  // namespace details
}  // namespace dilated
