// cuda_fa3/details/backward2_epilogue.cuh - how the v2 backward's gradients
// leave a consumer warpgroup.
//
// dQ (per query block): several key blocks (CTAs) add into one query row, so
// the warpgroup's 64 x HeadDim/2 fp32 block is staged in shared memory with
// the TMA's 128-byte swizzle and added to the fp32 accumulator by
// cp.reduce.async.bulk.tensor (one instruction per 32-column box, through the
// branch's dilated descriptor: rows past the tensor are dropped, rows of the
// next segment inside the box receive +0). One thread issues it; the buffer is
// reused only after that thread saw the previous reduction finish reading it.
//
// dK, dV (once per CTA): each key row belongs to one CTA of the launch, so the
// direct path writes 16-bit rows, and the multi-branch path does a plain
// read-add-write of the fp32 accumulators (branches are successive launches).
#pragma once

#include <cstdint>

#include "cuda_fa3/details/backward2_params.hpp"
#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

// dq: the m64 x N accumulator (N = Shape::kDqCols) of warpgroup `wg`; row_in
// are the thread's two rows (queries in the block). `thread` is 0..127.
template <class Shape>
__device__ __forceinline__ void bwd2_store_dq(const Backward2Args& args, const Bwd2Tile& t, char* dq_smem,
                                              const float (&dq)[Shape::kDqCols / 2], std::int64_t q_begin,
                                              int wg, int thread) {
  const int lane = thread % 32, warp = thread / 32;
  const float scale = args.p.scale;
  // The previous block's reduction must have finished reading the buffer.
  if (thread == 0) bulk_wait_group_read<0>();
  named_sync(Shape::kBarDq + wg, 128);
#pragma unroll
  for (int j = 0; j < Shape::kDqCols / 8; ++j) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int row = 16 * warp + lane / 4 + 8 * rr;
      const int byte = 32 * (j % 4) + 8 * (lane % 4);  // inside the row's 128 bytes of box j / 4
      const int chunk = (byte >> 4) ^ (row & 7);       // 128-byte swizzle: 16-byte chunk ^ row % 8
      float2* dst = reinterpret_cast<float2*>(dq_smem + (j / 4) * Shape::kDqBoxBytes + row * 128 + (chunk << 4) +
                                              (byte & 15));
      *dst = make_float2(scale * dq[4 * j + 2 * rr], scale * dq[4 * j + 2 * rr + 1]);
    }
  }
  fence_proxy_async();  // make the generic-proxy stores visible to the TMA
  named_sync(Shape::kBarDq + wg, 128);
  if (thread == 0) {
    const int row = int(t.map_row0 + q_begin);
#pragma unroll
    for (int box = 0; box < Shape::kDqBoxes; ++box)
      tma_reduce_add_4d(&args.dq[t.phase], dq_smem + box * Shape::kDqBoxBytes,
                        (Shape::kDqSplitKeys ? 0 : wg * Shape::kDqCols) + 32 * box, row, t.h, t.b);
    bulk_commit_group();
  }
}

// dK (times the softmax scale) and dV of the warpgroup's 64 keys.
template <class T, class Shape>
__device__ __forceinline__ void bwd2_store_dkv(const Backward2Args& args, const Bwd2Tile& t,
                                               const float (&dk)[Shape::kHeadDim / 2],
                                               const float (&dv)[Shape::kHeadDim / 2], int wg, int thread) {
  constexpr int kD = Shape::kHeadDim;
  const BackwardParams& p = args.p;
  const int lane = thread % 32, warp = thread / 32;
  const std::int64_t r = p.pattern.dilation[p.branch];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t key = t.k_begin + 64 * wg + 16 * warp + lane / 4 + 8 * rr;
    if (key >= t.kept) continue;
    const std::int64_t pos = t.first + key * r;
    if (args.direct_dkv) {
      using P2 = Pack2<T>;
      T* krow = static_cast<T*>(args.dk_out) + t.b * args.dk_stride_b + pos * args.dk_stride_s + t.h * args.dk_stride_h;
      T* vrow = static_cast<T*>(args.dv_out) + t.b * args.dv_stride_b + pos * args.dv_stride_s + t.h * args.dv_stride_h;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) {
        const int col = 8 * j + 2 * (lane % 4);
        *reinterpret_cast<typename P2::type*>(krow + col) =
            P2::make(p.scale * dk[4 * j + 2 * rr], p.scale * dk[4 * j + 2 * rr + 1]);
        *reinterpret_cast<typename P2::type*>(vrow + col) = P2::make(dv[4 * j + 2 * rr], dv[4 * j + 2 * rr + 1]);
      }
    } else {
      const std::int64_t off = ((std::int64_t(t.b) * p.seq_len + pos) * p.heads + t.h) * kD;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) {
        const int col = 8 * j + 2 * (lane % 4);
        float2* gk = reinterpret_cast<float2*>(p.dk + off + col);
        float2* gv = reinterpret_cast<float2*>(p.dv + off + col);
        float2 x = *gk, y = *gv;
        x.x += p.scale * dk[4 * j + 2 * rr];
        x.y += p.scale * dk[4 * j + 2 * rr + 1];
        y.x += dv[4 * j + 2 * rr];
        y.y += dv[4 * j + 2 * rr + 1];
        *gk = x;
        *gv = y;
      }
    }
  }
}

}  // namespace dilated::cuda_fa3::details
