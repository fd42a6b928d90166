// dilated/details/simd.hpp - the host SIMD vector used by the tile kernels.
//
// GCC/Clang vector extensions give reliable register-blocked code for the
// small tile GEMMs (plain loops over 2-D local arrays were measured 25x
// slower with g++ 12: the accumulators are not kept in registers). Device
// compilation and other compilers get the scalar fallback path.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__) && \
    !defined(__HIP_DEVICE_COMPILE__) && !defined(__SYCL_DEVICE_ONLY__) && !defined(__NVCC__)
#define DILATED_HOST_VECTOR 1
#else
#define DILATED_HOST_VECTOR 0
#endif

namespace dilated {
namespace details {

#if defined(__AVX512F__)
constexpr int kSimdBytes = 64;
#elif defined(__AVX__)
constexpr int kSimdBytes = 32;
#else
constexpr int kSimdBytes = 16;
#endif

#if DILATED_HOST_VECTOR
template <class T>
struct HostVec {
  typedef T type __attribute__((vector_size(kSimdBytes)));
  static constexpr int lanes = kSimdBytes / sizeof(T);
  static inline type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static inline void store(T* p, type v) { std::memcpy(p, &v, sizeof v); }
};
#endif

}  // namespace details
}  // namespace dilated
