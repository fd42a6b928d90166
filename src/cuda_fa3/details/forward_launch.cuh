// cuda_fa3/details/forward_launch.cuh - launches one branch of the forward for
// a (dtype, head_dim) instantiation, and the fill that precedes merged runs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_fa3/details/forward_params.hpp"

namespace dilated::cuda_fa3::details {

// Query rows per tile of a launch with these parameters (plan.cu counts
// tiles with it; launch_forward_branch picks the kernel by the same rule).
int forward_block_m(int head_dim, const ForwardParams& p);

// Whether a launch with these parameters and `tiles` query tiles runs the
// causal persistent grid (forward_kernel.cuh produce_dynamic_tiles): causal,
// head_dim 128 or 256, no dropout, not block-sparse. The caller then passes
// a zeroed counter in p.tile_counter. DILATED_FA3_CAUSAL_GRID=tile (read
// once per process) restores one tile per CTA for comparison.
bool forward_dynamic_grid(int head_dim, const ForwardParams& p, std::int64_t tiles);

// Whether a causal head_dim 128 launch takes 176-key blocks (plan.cu's
// tile-size heuristic; long_rows: >= 8192 keys, where it takes them for
// non-causal launches). DILATED_FA3_CAUSAL_KEYS=176 (read once per process)
// takes them for every causal head_dim 128 launch (tests, comparisons), =128 never.
bool forward_wide_causal(bool long_rows);

template <class T, int HeadDim, int BlockN>
void launch_forward_branch(const ForwardArgs& args, std::int64_t tiles, cudaStream_t stream);

// out = 0 and lse = -inf: the identity of the LSE merge. Without a list, on
// every row (configs whose first branch does not write every row); with
// one, on the rows of the listed 128-row query tiles only (block-sparse
// tiles with no visible key block, which the forward kernel skips; rows
// past seq_len are not touched). count == 0 launches nothing.
template <class T>
void launch_fill_empty(const ForwardParams& p, std::int64_t head_dim, cudaStream_t stream,
                       const EmptyTile* tiles = nullptr, std::int64_t count = -1);

}  // namespace dilated::cuda_fa3::details
