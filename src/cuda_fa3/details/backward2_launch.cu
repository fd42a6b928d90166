// cuda_fa3/details/backward2_launch.cu - see backward2_launch.cuh.
#include "cuda_fa3/details/backward2_launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda_fa3/details/backward2_launch_impl.cuh"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

Bwd2Variant backward2_variant_from_env() {
  const char* env = std::getenv("DILATED_FA3_BWD_SCHEDULE");
  if (!env || !*env) return kBackward2DefaultVariant;
  if (std::strcmp(env, "p") == 0) return Bwd2Variant::pipelined;
  if (std::strcmp(env, "pw") == 0) return Bwd2Variant::pipelined_writer;
  if (std::strcmp(env, "r") == 0) return Bwd2Variant::reordered;
  if (std::strcmp(env, "rw") == 0) return Bwd2Variant::reordered_writer;
  if (std::strcmp(env, "rwl") == 0) return Bwd2Variant::reordered_writer_lean;
  throw Error("cuda.config",
              std::string("DILATED_FA3_BWD_SCHEDULE=") + env + ": expected p, pw, r, rw or rwl");
}

template <class T, int HeadDim, bool Pipelined>
void launch_backward2_branch(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream) {
  if constexpr (!Pipelined)
    launch_backward2_kernel<T, HeadDim, Bwd2Schedule::v2, 1>(args, tiles, stream, "cuda_fa3 backward v2: ");
  else if constexpr (HeadDim == 128)
    launch_backward2_d128_variant<T>(args, tiles, stream, backward2_variant_from_env());
  else
    launch_backward2_kernel<T, HeadDim, Bwd2Schedule::v2p, 1>(args, tiles, stream, "cuda_fa3 backward v2p: ");
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
