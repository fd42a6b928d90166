// cuda_fa3/details/backward2_producer.cuh - the producer warpgroup of the v2
// backward: one thread issues every TMA load, one warp stages LSE and delta.
//
// Stage protocol (per Q/dO stage s, use u = step / kStages):
//   qdo_full[s]  completes use u when the TMA thread's arrive.expect_tx and the
//                32 LSE/delta lanes have arrived and all Q and dO bytes landed;
//                consumers wait on parity u & 1.
//   qdo_empty[s] completes use u when all 256 consumer threads have retired
//                every wgmma reading Q/dO of that use and read its LSE/delta;
//                producers wait on parity (u - 1) & 1 before refilling (u >= 1).
#pragma once

#include <cuda.h>

#include <cmath>
#include <cstdint>

#include "cuda_fa3/details/backward2_params.hpp"
#include "cuda_fa3/details/backward_kernel.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

struct Bwd2Barriers {
  std::uint64_t* kv_full;
  std::uint64_t* qdo_full;   // [kStages]
  std::uint64_t* qdo_empty;  // [kStages]
};

// The key block, its query blocks and TMA rows: v1's KeyTile and
// decode_key_tile (backward_kernel.cuh) with this shape's 128 keys and
// 64-query steps.
using Bwd2Tile = KeyTile;

template <class Shape>
__device__ __forceinline__ void bwd2_load_panels(const CUtensorMap* map, char* dst, int panel_bytes,
                                                 std::uint64_t* bar, std::int64_t row, int h, int b) {
#pragma unroll
  for (int panel = 0; panel < Shape::kPanels; ++panel)
    tma_load_4d(dst + panel * panel_bytes, map, bar, 64 * panel, int(row), h, b);
}

// One thread: K and V once, then Q and dO of every query block into the ring.
template <class Shape>
__device__ void bwd2_produce_tma(const Backward2Args& args, const Bwd2Tile& t, char* smem,
                                 Bwd2Barriers bar) {
  prefetch_tensormap(&args.q[t.phase]);
  prefetch_tensormap(&args.dout[t.phase]);
  mbar_arrive_expect_tx(bar.kv_full, 2 * Shape::kTileBytesKV);
  const std::int64_t krow = t.map_row0 + t.k_begin;
  bwd2_load_panels<Shape>(&args.k[t.phase], smem + Shape::kOffsetK, Shape::kPanelBytesKV, bar.kv_full, krow,
                          t.h, t.b);
  bwd2_load_panels<Shape>(&args.v[t.phase], smem + Shape::kOffsetV, Shape::kPanelBytesKV, bar.kv_full, krow,
                          t.h, t.b);
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % Shape::kStages;
    const int use = step / Shape::kStages;
    if (use > 0) mbar_wait(&bar.qdo_empty[stage], (use - 1) & 1);
    const std::int64_t row = t.map_row0 + std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
    mbar_arrive_expect_tx(&bar.qdo_full[stage], 2 * Shape::kTileBytesQ);
    bwd2_load_panels<Shape>(&args.q[t.phase], smem + Shape::kOffsetQ + stage * Shape::kTileBytesQ,
                            Shape::kPanelBytesQ, &bar.qdo_full[stage], row, t.h, t.b);
    bwd2_load_panels<Shape>(&args.dout[t.phase], smem + Shape::kOffsetDO + stage * Shape::kTileBytesQ,
                            Shape::kPanelBytesQ, &bar.qdo_full[stage], row, t.h, t.b);
  }
}

// Two warps, one query of the block per lane: the merged LSE (in log2 units)
// and delta into the stage. Queries past the segment's kept rows, and rows no
// branch keeps (LSE -inf), get LSE = +inf and delta = 0, so P = exp2(s - LSE)
// = 0 there without a per-element query mask in the consumers. Dilated rows
// are strided, so these are plain loads rather than TMA. Written for the
// producer's 24 registers: pointers advance by one block per step.
template <class Shape>
__device__ void bwd2_produce_stats(const Backward2Args& args, const Bwd2Tile& t, char* smem,
                                   Bwd2Barriers bar, int q_local) {
  const BackwardParams& p = args.p;
  const float kLog2e = 1.4426950408889634f;
  const std::int64_t r = p.pattern.dilation[p.branch];
  std::int64_t q = std::int64_t(t.q_block_begin) * Shape::kBlockM + q_local;
  const float* lp = p.lse + t.b * p.lse_stride_b + t.h * p.lse_stride_h + (t.first + q * r) * p.lse_stride_s;
  const float* dptr = p.delta + (std::int64_t(t.b) * p.heads + t.h) * p.seq_len + t.first + q * r;
  const std::int64_t lstep = Shape::kBlockM * r * p.lse_stride_s, dstep = Shape::kBlockM * r;
  // 32-bit shared-memory addresses: two registers fewer than generic pointers.
  const std::uint32_t ls = smem_u32(smem + Shape::kOffsetLse) + 4 * q_local;
  const std::uint32_t ds = smem_u32(smem + Shape::kOffsetDelta) + 4 * q_local;
#pragma unroll 1  // unrolled copies would not fit 24 registers
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % Shape::kStages;
    const int use = step / Shape::kStages;
    // Load before waiting for the stage to free up: the latency overlaps.
    float l = INFINITY, d = 0.f;
    if (q < t.kept) {
      const float x = __ldg(lp);
      if (x != -INFINITY) {
        l = x * kLog2e;
        d = __ldg(dptr);
      }
    }
    if (use > 0) mbar_wait(&bar.qdo_empty[stage], (use - 1) & 1);
    st_shared_f32(ls + 4 * stage * Shape::kBlockM, l);
    st_shared_f32(ds + 4 * stage * Shape::kBlockM, d);
    mbar_arrive(&bar.qdo_full[stage]);  // release: the stores above are visible to the waiters
    q += Shape::kBlockM;
    lp += lstep;
    dptr += dstep;
  }
}

}  // namespace dilated::cuda_fa3::details
