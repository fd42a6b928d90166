// cuda_fa3/details/backward2_launch.cu - see backward2_launch.cuh.
#include "cuda_fa3/details/backward2_launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <mutex>
#include <string>

#include "cuda_fa3/details/backward2_kernel.cuh"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

template <class T, int HeadDim, bool Pipelined>
void launch_backward2_branch(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream) {
  using Shape = Bwd2Shape<HeadDim>;
  static_assert(Shape::kBlockN == kBackward2BlockN && Shape::kBlockM == kBackward2BlockM,
                "plan.cu encodes the TMA boxes with these sizes");
  auto* kernel = &backward2_kernel<T, HeadDim, Pipelined>;
  constexpr const char* kName = Pipelined ? "cuda_fa3 backward v2p: " : "cuda_fa3 backward v2: ";
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw Error("cuda.runtime", std::string(kName) + what + ": " + cudaGetErrorString(e));
  };
  static std::once_flag once;
  std::call_once(once, [&] {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::kSmemBytes),
          "cudaFuncSetAttribute");
  });
  // The kernel's tiles, smem layout and dK/dV rows are built for HeadDim
  // columns: another head_dim reads zeros past the row and writes past it.
  if (args.p.head_dim != HeadDim)
    throw Error("cuda.unsupported", std::string(kName) + "head_dim " + std::to_string(args.p.head_dim) +
                                        " launched on the head_dim " + std::to_string(HeadDim) + " kernel");
  if (tiles > 0x7fffffff) throw Error("cuda.grid", std::string(kName) + "more than 2^31-1 key tiles");
  kernel<<<dim3(unsigned(tiles)), dim3(Shape::kThreads), Shape::kSmemBytes, stream>>>(args);
  check(cudaGetLastError(), "kernel launch");
}

template void launch_backward2_branch<__nv_bfloat16, 64>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__half, 64>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__nv_bfloat16, 128>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__half, 128>(const Backward2Args&, std::int64_t, cudaStream_t);
// v2p (software-pipelined consumers).
template void launch_backward2_branch<__nv_bfloat16, 64, true>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__half, 64, true>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__nv_bfloat16, 128, true>(const Backward2Args&, std::int64_t, cudaStream_t);
template void launch_backward2_branch<__half, 128, true>(const Backward2Args&, std::int64_t, cudaStream_t);

}  // namespace dilated::cuda_fa3::details
