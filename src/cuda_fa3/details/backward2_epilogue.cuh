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

// The m64 x N dQ accumulator (N = Shape::kDqCols) of one consumer warpgroup,
// times the softmax scale, into a staging buffer (fp32 boxes of 32 columns,
// 128-byte swizzle), then fenced for the TMA. `thread` is 0..127.
template <class Shape>
__device__ __forceinline__ void bwd2_dq_to_smem(char* dq_smem, const float (&dq)[Shape::kDqCols / 2], float scale,
                                                int thread) {
  const int lane = thread % 32, warp = thread / 32;
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
}

// The reduce-add of one staged dQ block (all boxes of one warpgroup) into the
// fp32 accumulator: one thread, one bulk group.
template <class Shape>
__device__ __forceinline__ void bwd2_reduce_dq(const Backward2Args& args, const Bwd2Tile& t, const char* dq_smem,
                                               std::int64_t q_begin, int wg) {
  const int row = int(t.map_row0 + q_begin);
#pragma unroll
  for (int box = 0; box < Shape::kDqBoxes; ++box)
    tma_reduce_add_4d(&args.dq[t.phase], dq_smem + box * Shape::kDqBoxBytes,
                      (Shape::kDqSplitKeys ? 0 : wg * Shape::kDqCols) + 32 * box, row, t.h, t.b);
  bulk_commit_group();
}

// dq: the m64 x N accumulator (N = Shape::kDqCols) of warpgroup `wg`, staged
// and reduced by the warpgroup itself (one buffer). `thread` is 0..127.
template <class Shape>
__device__ __forceinline__ void bwd2_store_dq(const Backward2Args& args, const Bwd2Tile& t, char* dq_smem,
                                              const float (&dq)[Shape::kDqCols / 2], std::int64_t q_begin,
                                              int wg, int thread) {
  // The previous block's reduction must have finished reading the buffer.
  if (thread == 0) bulk_wait_group_read<0>();
  named_sync(Shape::kBarDq + wg, 128);
  bwd2_dq_to_smem<Shape>(dq_smem, dq, args.p.scale, thread);
  named_sync(Shape::kBarDq + wg, 128);
  if (thread == 0) bwd2_reduce_dq<Shape>(args, t, dq_smem, q_begin, wg);
}

// ---- dQ writer warp (Shape::kDqStages == 2) ----------------------------------
// A consumer warpgroup only stages dQ (waiting for a free buffer, which the
// writer freed a step earlier) and arrives; the producer warpgroup's writer
// warp issues the reductions and tracks when they finished reading. Per
// consumer warpgroup w and buffer b = step % 2, named barriers of 160 threads:
//   kBarDqFull + 2w + b:  consumers arrive after staging block `step`; the
//                         writer syncs, then issues its reduction.
//   kBarDqEmpty + 2w + b: the writer arrives once the reduction of block
//                         `step` has read the buffer; the consumers sync
//                         before staging block step + 2 into it.
// The writer frees block i - 1's buffers after issuing block i's reductions,
// only for blocks i + 1 that exist, so every arrive has exactly one matching
// sync and generations of one barrier cannot overtake each other (the next
// arrive on a barrier needs the other side's intervening step).
template <class Shape>
__device__ __forceinline__ char* bwd2_dq_buffer(char* smem, int wg, int buf) {
  return smem + Shape::kOffsetDQ + (wg * Shape::kDqStages + buf) * Shape::kDqBytesPerWg;
}

template <class Shape>
__device__ __forceinline__ void bwd2_stage_dq(char* smem, const float (&dq)[Shape::kDqCols / 2], float scale,
                                              int step, int wg, int thread) {
  static_assert(Shape::kDqStages == 2, "the dQ writer protocol double-buffers the staging");
  const int buf = step % 2;
  if (step >= 2) named_sync(Shape::kBarDqEmpty + 2 * wg + buf, 128 + 32);
  bwd2_dq_to_smem<Shape>(bwd2_dq_buffer<Shape>(smem, wg, buf), dq, scale, thread);
  named_arrive(Shape::kBarDqFull + 2 * wg + buf, 128 + 32);
}

// The writer warp's loop (every lane takes part in the barriers; lane 0
// issues and waits for the bulk groups).
template <class Shape>
__device__ void bwd2_write_dq(const Backward2Args& args, const Bwd2Tile& t, char* smem, int lane) {
  static_assert(Shape::kDqStages == 2, "the dQ writer protocol double-buffers the staging");
#pragma unroll 1
  for (int step = 0; step < t.q_blocks; ++step) {
    const int buf = step % 2;
    const std::int64_t q_begin = std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
#pragma unroll
    for (int wg = 0; wg < Shape::kConsumerWarpgroups; ++wg) {
      named_sync(Shape::kBarDqFull + 2 * wg + buf, 128 + 32);
      if (lane == 0) bwd2_reduce_dq<Shape>(args, t, bwd2_dq_buffer<Shape>(smem, wg, buf), q_begin, wg);
    }
    if (step >= 1 && step + 1 < t.q_blocks) {
      // Block step - 1's groups are all but the newest kConsumerWarpgroups.
      if (lane == 0) bulk_wait_group_read<Shape::kConsumerWarpgroups>();
      __syncwarp();
#pragma unroll
      for (int wg = 0; wg < Shape::kConsumerWarpgroups; ++wg)
        named_arrive(Shape::kBarDqEmpty + 2 * wg + (1 - buf), 128 + 32);
    }
  }
  // The last reductions must finish reading shared memory before the CTA exits.
  if (lane == 0) bulk_wait_group<0>();
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
