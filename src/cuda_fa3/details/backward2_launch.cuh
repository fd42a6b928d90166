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

template <class T, int HeadDim>
void launch_backward2_branch(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream);

// Keys per CTA of v2 (the K/V TMA box rows and the tile count's divisor).
inline constexpr int kBackward2BlockN = 128;
// Query rows per step (the Q/dO/dQ TMA box rows).
inline constexpr int kBackward2BlockM = 64;

}  // namespace dilated::cuda_fa3::details
