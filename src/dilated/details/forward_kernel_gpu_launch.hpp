// dilated/details/forward_kernel_gpu_launch.hpp - launches one branch of the
// GPU-shaped forward (forward_kernel_gpu.hpp, forward_kernel_gpu_pipelined.hpp)
// in the variant a plan chose (gpu_forward_variant.hpp).
#pragma once

#include <Kokkos_Core.hpp>

#if defined(KOKKOS_ENABLE_CUDA)

#include <cstdint>
#include <limits>

#include "dilated/details/forward_kernel_gpu.hpp"
#include "dilated/details/forward_kernel_gpu_pipelined.hpp"
#include "dilated/details/gpu_forward_variant.hpp"

namespace dilated {
namespace details {

template <class Ref>
inline bool gpu_rows_vec4(const Ref& t) {
  return t.stride[3] == 1 && t.stride[0] % 4 == 0 && t.stride[1] % 4 == 0 &&
         t.stride[2] % 4 == 0 && reinterpret_cast<std::uintptr_t>(t.data) % 16 == 0;
}

// Do 64 sparse rows of the launch's branch span fewer than 2^31 elements (the
// lean pipelined kernel's 32-bit row offsets)?
template <class Ref>
inline bool gpu_tile_rows_int32(const Ref& t, const KernelParams& p) {
  const std::int64_t step = p.pattern.dilation[p.branch] * t.stride[1];
  return step >= 0 && step < std::numeric_limits<std::int32_t>::max() / kGpuTileK;
}
// The lean pipelined kernel's other limits: one key span per tile (no
// block-sparse runs) and sparse indices (plus a tile) in 32 bits.
inline bool gpu_lean_launch_fits(const KernelParams& p) {
  return !p.pattern.block_sparse.enabled() &&
         p.pattern.max_kept_count(p.branch) < std::numeric_limits<std::int32_t>::max() / 2;
}

// Whether the GPU-shaped forward serves this launch (float, head_dim <= 128,
// its scratch fits level 0; the largest is the SPLIT pipelined kernel's).
inline bool gpu_forward_applies(std::int64_t head_dim) {
  using Policy = Kokkos::TeamPolicy<Kokkos::Cuda>;
  return head_dim <= kGpuMaxHeadDim &&
         ForwardBranchKernelGpuPipelined<16, 256, 2, true>::scratch_bytes() <=
             static_cast<std::size_t>(Policy::scratch_size_max(0));
}

// Functor: ForwardBranchKernelGpu<DMAX, NT> or
// ForwardBranchKernelGpuPipelined<DMAX, NT, MINB>.
template <class Functor, int NT, int MINB>
void launch_forward_gpu_functor(const Kokkos::Cuda& space, const char* label,
                                const TensorRef<const float, 4>& q,
                                const TensorRef<const float, 4>& k,
                                const TensorRef<const float, 4>& v,
                                const TensorRef<float, 4>& out, const TensorRef<float, 3>& lse,
                                const KernelParams& p) {
  Functor f{q, k, v, out, lse, p};
  f.vec4 = gpu_rows_vec4(q) && gpu_rows_vec4(k) && gpu_rows_vec4(v);
  const std::int64_t total = league_size(p);
  const std::int64_t chunk = std::numeric_limits<int>::max() / 2;
  for (std::int64_t begin = 0; begin < total; begin += chunk) {
    const std::int64_t n = total - begin < chunk ? total - begin : chunk;
    f.league_offset = begin;
    Kokkos::TeamPolicy<Kokkos::Cuda, Kokkos::LaunchBounds<NT, MINB>> policy(
        space, static_cast<int>(n), NT);
    policy.set_scratch_size(0, Kokkos::PerTeam(Functor::scratch_bytes()));
    Kokkos::parallel_for(label, policy, f);
  }
}

template <int DMAX>
void launch_forward_gpu_dmax(const Kokkos::Cuda& space, const char* label,
                             const TensorRef<const float, 4>& q,
                             const TensorRef<const float, 4>& k,
                             const TensorRef<const float, 4>& v, const TensorRef<float, 4>& out,
                             const TensorRef<float, 3>& lse, const KernelParams& p,
                             GpuForwardVariant variant) {
  switch (variant) {
    case GpuForwardVariant::kSimt256:
      launch_forward_gpu_functor<ForwardBranchKernelGpu<DMAX, 256>, 256, kGpuMinBlocks>(
          space, label, q, k, v, out, lse, p);
      return;
    case GpuForwardVariant::kPipe128:
      launch_forward_gpu_functor<ForwardBranchKernelGpuPipelined<DMAX, 128, 2>, 128, 2>(
          space, label, q, k, v, out, lse, p);
      return;
    case GpuForwardVariant::kPipe256:
      launch_forward_gpu_functor<ForwardBranchKernelGpuPipelined<DMAX, 256, 2>, 256, 2>(
          space, label, q, k, v, out, lse, p);
      return;
    case GpuForwardVariant::kPipe256l:
      // Lean staging reads whole rows as float4: contiguous, aligned rows of
      // exactly DMAX >= 32 elements; anything else runs pipe256.
      if constexpr (DMAX >= kGpuChunk) {
        if (p.head_dim == DMAX && gpu_rows_vec4(q) && gpu_rows_vec4(k) && gpu_rows_vec4(v) &&
            gpu_tile_rows_int32(q, p) && gpu_tile_rows_int32(k, p) && gpu_tile_rows_int32(v, p) &&
            gpu_lean_launch_fits(p)) {
          launch_forward_gpu_functor<ForwardBranchKernelGpuPipelined<DMAX, 256, 2, false, true>,
                                     256, 2>(space, label, q, k, v, out, lse, p);
          return;
        }
      }
      launch_forward_gpu_functor<ForwardBranchKernelGpuPipelined<DMAX, 256, 2>, 256, 2>(
          space, label, q, k, v, out, lse, p);
      return;
    case GpuForwardVariant::kPipe256s:
      launch_forward_gpu_functor<ForwardBranchKernelGpuPipelined<DMAX, 256, 2, true>, 256, 2>(
          space, label, q, k, v, out, lse, p);
      return;
    default:
      launch_forward_gpu_functor<ForwardBranchKernelGpu<DMAX, 128>, 128, kGpuMinBlocks>(
          space, label, q, k, v, out, lse, p);
      return;
  }
}

// p: the branch's parameters with tile_q = kGpuTileQ (and tiles_per_segment
// to match); variant: any but kClassic.
inline void launch_forward_gpu(const Kokkos::Cuda& space, const char* label,
                               const TensorRef<const float, 4>& q,
                               const TensorRef<const float, 4>& k,
                               const TensorRef<const float, 4>& v, const TensorRef<float, 4>& out,
                               const TensorRef<float, 3>& lse, const KernelParams& p,
                               GpuForwardVariant variant) {
  if (p.head_dim <= 16)
    launch_forward_gpu_dmax<16>(space, label, q, k, v, out, lse, p, variant);
  else if (p.head_dim <= 32)
    launch_forward_gpu_dmax<32>(space, label, q, k, v, out, lse, p, variant);
  else if (p.head_dim <= 64)
    launch_forward_gpu_dmax<64>(space, label, q, k, v, out, lse, p, variant);
  else
    launch_forward_gpu_dmax<128>(space, label, q, k, v, out, lse, p, variant);
}

}  // namespace details
}  // namespace dilated

#endif  // KOKKOS_ENABLE_CUDA
