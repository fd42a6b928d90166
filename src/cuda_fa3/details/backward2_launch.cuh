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

// BackwardKernel::automatic (without DILATED_FA3_BWD) runs the v2 family only
// where it has passed test_fa3_backward on an H100: head_dim 128 and, since
// its dispatch was fixed (32fe347) and it passed there, head_dim 64
// (2026-11-27). kBackward2AutoHeadDim64 = false would send head_dim 64 back
// to v1.
inline constexpr bool kBackward2AutoHeadDim64 = true;
// Which member of the family automatic runs: v2p (the pipelined schedule)
// passed the same suite and compute-sanitizer on the H100 and ran 4-6%
// faster than v2 in the same run (2026-11-27: dense d128 12.4 vs 13.1 ms).
inline constexpr bool kBackward2AutoPipelined = true;

// Whether automatic picks the v2 family for a problem v2 covers.
inline bool backward2_auto(std::int64_t head_dim) {
  return head_dim == 128 || (head_dim == 64 && kBackward2AutoHeadDim64);
}

// Pipelined: v2p, the software-pipelined consumer schedule (next block's
// S^T issued before this block's dQ store; backward2_pipelined.cuh).
// Selected by BackwardKernel::v2_pipelined, DILATED_FA3_BWD=v2p, or by
// automatic where it picks the v2 family (kBackward2AutoPipelined).
template <class T, int HeadDim, bool Pipelined = false>
void launch_backward2_branch(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream);

// head_dim 128 members of the pipelined family (what BackwardKernel::
// v2_pipelined runs there), picked by DILATED_FA3_BWD_SCHEDULE at each call:
//   p  (pipelined)         v2p, backward2_pipelined.cuh;
//   pw (pipelined_writer)  v2p with the dQ writer warp and two dQ staging
//                          buffers per warpgroup (backward2_epilogue.cuh);
//   r  (reordered)         v2r, FA3's product order, backward2_reordered.cuh;
//   rw (reordered_writer)  v2r with the dQ writer warp (default, below);
//   rwl (reordered_writer_lean) rw with backward2_lean.cuh's softmax,
//                          addresses and dQ staging;
// head_dim 64 always runs v2p. An unknown value throws (rule cuda.config).
enum class Bwd2Variant {
  pipelined,
  pipelined_writer,
  reordered,
  reordered_writer,
  reordered_writer_lean
};
// The default: rwl (2026-11-27 (j), perf_tests/results/h100-fa3-2026-11-27-bwd4):
// rw's schedule with fewer instructions per step; 16% / 19% (dense / causal)
// faster than rw in the same call on the H100. rw before it (2026-11-27 (e),
// h100-fa3-2026-11-27-bwd3) ran 1-2% faster than p.
inline constexpr Bwd2Variant kBackward2DefaultVariant = Bwd2Variant::reordered_writer_lean;
Bwd2Variant backward2_variant_from_env();
template <class T>
void launch_backward2_d128_variant(const Backward2Args& args, std::int64_t tiles, cudaStream_t stream,
                                   Bwd2Variant variant);

// Keys per CTA of v2 (the K/V TMA box rows and the tile count's divisor).
inline constexpr int kBackward2BlockN = 128;
// Query rows per step (the Q/dO/dQ TMA box rows).
inline constexpr int kBackward2BlockM = 64;

}  // namespace dilated::cuda_fa3::details
