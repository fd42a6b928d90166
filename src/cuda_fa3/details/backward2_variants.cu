// cuda_fa3/details/backward2_variants.cu - the head_dim 128 schedule variants
// of v2p (see backward2_launch.cuh, Bwd2Variant), in their own translation
// unit so they compile beside backward2_launch.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_fa3/details/backward2_launch_impl.cuh"

namespace dilated::cuda_fa3::details {

template <class T>
void launch_backward2_d128_variant(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream,
                                   Bwd2Variant variant) {
  switch (variant) {
    case Bwd2Variant::pipelined_writer:
      launch_backward2_kernel<T, 128, Bwd2Schedule::v2p, 2>(args, tiles, stream, "cuda_fa3 backward v2p-w: ");
      return;
    case Bwd2Variant::reordered:
      launch_backward2_kernel<T, 128, Bwd2Schedule::v2r, 1>(args, tiles, stream, "cuda_fa3 backward v2r: ");
      return;
    case Bwd2Variant::reordered_writer:
      launch_backward2_kernel<T, 128, Bwd2Schedule::v2r, 2>(args, tiles, stream, "cuda_fa3 backward v2r-w: ");
      return;
    case Bwd2Variant::reordered_writer_lean:
      launch_backward2_kernel<T, 128, Bwd2Schedule::v2rl, 2>(args, tiles, stream, "cuda_fa3 backward v2r-wl: ");
      return;
    case Bwd2Variant::pipelined:
      break;
  }
  launch_backward2_kernel<T, 128, Bwd2Schedule::v2p, 1>(args, tiles, stream, "cuda_fa3 backward v2p: ");
}

template void launch_backward2_d128_variant<__nv_bfloat16>(const Backward2Args&, std::int64_t, cudaStream_t,
                                                           Bwd2Variant);
template void launch_backward2_d128_variant<__half>(const Backward2Args&, std::int64_t, cudaStream_t, Bwd2Variant);

}  // namespace dilated::cuda_fa3::details
