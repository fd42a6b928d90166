// cuda_fa3/details/backward2_launch_impl.cuh - one launch of one v2-family
// kernel instance (shared by backward2_launch.cu and backward2_variants.cu, so
// the head_dim 128 schedule variants compile in their own translation unit).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "cuda_fa3/details/backward2_kernel.cuh"
#include "cuda_fa3/details/backward2_launch.cuh"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

template <class T, int HeadDim, Bwd2Schedule Schedule, int DqStages>
void launch_backward2_kernel(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream,
                             const char* name) {
  using Shape = Bwd2Shape<HeadDim, DqStages>;
  static_assert(Shape::kBlockN == kBackward2BlockN && Shape::kBlockM == kBackward2BlockM,
                "plan.cu encodes the TMA boxes with these sizes");
  auto* kernel = &backward2_kernel<T, HeadDim, Schedule, DqStages>;
  auto check = [name](cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw Error("cuda.runtime", std::string(name) + what + ": " + cudaGetErrorString(e));
  };
  static std::once_flag once;  // one per kernel instance
  std::call_once(once, [&] {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::kSmemBytes),
          "cudaFuncSetAttribute");
  });
  // The kernel's tiles, smem layout and dK/dV rows are built for HeadDim
  // columns: another head_dim reads zeros past the row and writes past it.
  if (args.p.head_dim != HeadDim)
    throw Error("cuda.unsupported", std::string(name) + "head_dim " + std::to_string(args.p.head_dim) +
                                        " launched on the head_dim " + std::to_string(HeadDim) + " kernel");
  if (tiles > 0x7fffffff) throw Error("cuda.grid", std::string(name) + "more than 2^31-1 key tiles");
  kernel<<<dim3(unsigned(tiles)), dim3(Shape::kThreads), Shape::kSmemBytes, stream>>>(args);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace dilated::cuda_fa3::details
