// A bfloat16 emulated in software (16-bit storage, round to nearest even,
// explicit float conversions), admitted as 16-bit storage through
// dilated::details::is_half_storage. Host-only Kokkos builds alias
// half_t/bhalf_t to float, so without it they would never run the plan's
// 16-bit paths (float accumulators, one rounding per output); with it every
// build does, on its host backends.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dilated/details/storage_types.hpp"

namespace dtest {

struct EmulatedBf16 {
  std::uint16_t bits;

  KOKKOS_DEFAULTED_FUNCTION EmulatedBf16() = default;
  KOKKOS_INLINE_FUNCTION explicit EmulatedBf16(float f) : bits(round(f)) {}
  KOKKOS_INLINE_FUNCTION explicit EmulatedBf16(double d) : bits(round(static_cast<float>(d))) {}
  KOKKOS_INLINE_FUNCTION explicit operator float() const {
    const std::uint32_t u = std::uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  KOKKOS_INLINE_FUNCTION explicit operator double() const {
    return static_cast<double>(static_cast<float>(*this));
  }

 private:
  KOKKOS_INLINE_FUNCTION static std::uint16_t round(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to even (inf stays inf)
    return std::uint16_t(u >> 16);
  }
};
static_assert(sizeof(EmulatedBf16) == 2 && std::is_trivially_copyable<EmulatedBf16>::value,
              "EmulatedBf16 must be a 16-bit trivially copyable type");

}  // namespace dtest

namespace dilated {
namespace details {
template <>
struct is_half_storage<dtest::EmulatedBf16> : std::true_type {};
}  // namespace details
}  // namespace dilated
