// dilated/details/storage_types.hpp - the element types the portable kernels
// take, decided in this one place.
//
// float and double compute in their own type. 16-bit storage types compute in
// float: inputs are converted on load, and every output is rounded once, on
// its final store. Kokkos' half_t and bhalf_t qualify only where this Kokkos
// makes them real 16-bit types: Kokkos 3.4 has no bhalf_t, and host-only
// builds (3.4 and 4.x alike) alias half_t/bhalf_t to float
// (KOKKOS_HALF_T_IS_FLOAT / KOKKOS_BHALF_T_IS_FLOAT true), where they already
// are float. A build with Kokkos' CUDA backend has both as real types on the
// device and on its host backends.
//
// Any other type that converts explicitly to and from float may be admitted
// by specialising is_half_storage (the unit tests do so with an emulated
// bfloat16, so host-only CI builds run the 16-bit paths too).
#pragma once

#include <Kokkos_Core.hpp>
#include <type_traits>

// 1 where Kokkos' type exists and is not float (tests use these to list them).
#if defined(KOKKOS_HALF_T_IS_FLOAT) && !KOKKOS_HALF_T_IS_FLOAT
#define DILATED_HAS_HALF_T 1
#else
#define DILATED_HAS_HALF_T 0
#endif
#if defined(KOKKOS_BHALF_T_IS_FLOAT) && !KOKKOS_BHALF_T_IS_FLOAT
#define DILATED_HAS_BHALF_T 1
#else
#define DILATED_HAS_BHALF_T 0
#endif

namespace dilated {
namespace details {

template <class T>
struct is_half_storage : std::false_type {};
#if DILATED_HAS_HALF_T
template <>
struct is_half_storage<Kokkos::Experimental::half_t> : std::true_type {};
#endif
#if DILATED_HAS_BHALF_T
template <>
struct is_half_storage<Kokkos::Experimental::bhalf_t> : std::true_type {};
#endif

// Tensor element types a Plan accepts.
template <class T>
constexpr bool is_storage_type() {
  return std::is_same<T, float>::value || std::is_same<T, double>::value ||
         is_half_storage<T>::value;
}

}  // namespace details
}  // namespace dilated
