// dilated/host_device.hpp - function qualifier shared by the portable (Kokkos)
// kernels and the plain-CUDA backend, so the sparsity rule and the RNG are one
// piece of code callable from host and device without depending on Kokkos.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DILATED_HOST_DEVICE __host__ __device__
#else
#define DILATED_HOST_DEVICE
#endif
#define DILATED_INLINE DILATED_HOST_DEVICE inline
