// cuda_fa3/details/backward2_launch.cuh - the v2 backward's launch (one
// branch) and which problems it covers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_fa3/details/backward2_params.hpp"

namespace dilated::cuda_fa3::details {

// What v2 implements: head_dim 64 and 128 without dropout (v1 runs the rest).
inline bool backward2_covers(std::int64_t head_dim, bool dropout) {
  return (head_dim == 64 || head_dim == 128) && !dropout;
}

// BackwardKernel::automatic (without DILATED_FA3_BWD) runs v2 only where it
// has passed test_fa3_backward on an H100: head_dim 128 (2026-11-27).
// head_dim 64 stays on v1 until its kernel has passed there too (until then
// every "v2" head_dim 64 run had launched the head_dim 128 kernel, see
// plan.cu launch_v2_branch); then set this to true.
inline constexpr bool kBackward2AutoHeadDim64 = true;

// Whether automatic picks v2 for a problem v2 covers.
inline bool backward2_auto(std::int64_t head_dim) {
  return head_dim == 128 || (head_dim == 64 && kBackward2AutoHeadDim64);
}

// Pipelined: v2p, the software-pipelined consumer schedule (next block's
// S^T issued before this block's dQ store; backward2_pipelined.cuh).
// Selected only by BackwardKernel::v2_pipelined or DILATED_FA3_BWD=v2p;
// automatic never picks it.
template <class T, int HeadDim, bool Pipelined = false>
void launch_backward2_branch(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream);

// Keys per CTA of v2 (the K/V TMA box rows and the tile count's divisor).
inline constexpr int kBackward2BlockN = 128;
// Query rows per step (the Q/dO/dQ TMA box rows).
inline constexpr int kBackward2BlockM = 64;

}  // namespace dilated::cuda_fa3::details
