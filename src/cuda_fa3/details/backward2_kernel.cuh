// cuda_fa3/details/backward2_kernel.cuh - the FA3-style H100 backward ("v2")
// for one branch: one CTA per (128-key block, segment, head, batch).
//
//   warpgroup 0 (24 registers): thread 0 issues TMA (K, V once; Q, dO ring),
//                               warps 1-2 stage LSE and delta; warp 3 is the
//                               dQ writer with DqStages == 2, else idles.
//   warpgroups 1, 2 (240):      64 keys each, backward2_mainloop.cuh.
//
// Same semantics as v1 (backward_kernel.cuh): the merged LSE and delta of the
// whole layer, so per-branch gradients sum to the exact gradient of LongNet's
// merged output; dilation through one TMA descriptor per residue. v2 covers
// head_dim 64 and 128 without dropout; plan.cu sends everything else to v1.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "cuda_fa3/details/backward2_mainloop.cuh"
#include "cuda_fa3/details/backward2_params.hpp"
#include "cuda_fa3/details/backward2_pipelined.cuh"
#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/backward2_reordered.cuh"
#include "cuda_fa3/details/backward2_shape.hpp"
#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

// The consumers' schedule: v2 as verified (backward2_mainloop.cuh), v2p
// (software-pipelined, backward2_pipelined.cuh) or v2r (FA3's product order,
// backward2_reordered.cuh, head_dim 128); v2rl: v2r with the lean softmax
// and addresses of backward2_lean.cuh.
enum class Bwd2Schedule { v2, v2p, v2r, v2rl };

// DqStages 2: the producer's warp 3 issues the dQ reductions from two staging
// buffers per consumer warpgroup (backward2_epilogue.cuh); 1: each consumer
// warpgroup reduces its own single buffer.
template <class T, int HeadDim, Bwd2Schedule Schedule, int DqStages = 1>
__global__ void __launch_bounds__(Bwd2Shape<HeadDim>::kThreads, 1)
    backward2_kernel(const __grid_constant__ Backward2Args args) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Shape = Bwd2Shape<HeadDim, DqStages>;
  static_assert(Schedule != Bwd2Schedule::v2 || DqStages == 1, "v2 reduces its own dQ");
  // Causal: the first key blocks of a segment see the most query blocks;
  // hand those out first (kt-major order) so the grid's tail is short.
  // Otherwise neighbouring CTAs share a (batch, head, segment), so its Q and
  // dO stay in L2.
  std::int64_t idx = blockIdx.x;
  if (args.p.causal) {
    const std::int64_t groups = std::int64_t(args.p.batch) * args.p.heads * args.p.num_segments;
    idx = (idx % groups) * args.p.tiles_per_segment + idx / groups;
  }
  const Bwd2Tile t = decode_key_tile<Shape>(args.p, idx);
  // Uniform over the CTA, before any barrier. With the direct dK/dV path (one
  // branch, dilation 1) every key block of a segment has >= 1 query block,
  // so no dK/dV row is skipped here.
  if (!t.active || t.q_blocks <= 0) return;

  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) &
                                       ~std::uintptr_t(1023));
  auto* bars = reinterpret_cast<std::uint64_t*>(smem + Shape::kOffsetBarriers);
  const Bwd2Barriers bar{bars, bars + 1, bars + 1 + Shape::kStages};
  if (threadIdx.x == 0) {
    mbar_init(bar.kv_full, 1);
    for (int s = 0; s < Shape::kStages; ++s) {
      mbar_init(&bar.qdo_full[s], Shape::kFullArrivals);
      mbar_init(&bar.qdo_empty[s], Shape::kEmptyArrivals);
    }
    fence_barrier_init();
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    regs_release<24>();  // 168 x 384 at launch: (168-24) x 128 = (240-168) x 256
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0 && lane == 0) bwd2_produce_tma<Shape>(args, t, smem, bar);
    else if (warp >= 1 && warp <= Shape::kStatsWarps) bwd2_produce_stats<Shape>(args, t, smem, bar, threadIdx.x - 32);
    else if constexpr (DqStages == 2) {
      if (warp == Shape::kDqWriterWarp) bwd2_write_dq<Shape>(args, t, smem, lane);
    }
  } else {
    regs_acquire<240>();
    if constexpr (Schedule == Bwd2Schedule::v2rl)
      bwd2_consume_reordered<T, Shape, true>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128);
    else if constexpr (Schedule == Bwd2Schedule::v2r)
      bwd2_consume_reordered<T, Shape>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128);
    else if constexpr (Schedule == Bwd2Schedule::v2p)
      bwd2_consume_pipelined<T, Shape>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128);
    else
      bwd2_consume<T, Shape>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128);
  }
#endif
}

}  // namespace dilated::cuda_fa3::details
