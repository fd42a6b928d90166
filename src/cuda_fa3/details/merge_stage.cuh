// cuda_fa3/details/merge_stage.cuh - the merge's read of the earlier
// branches' O rows and LSE, issued at the start of a tile and landed in shared
// memory by its end.
//
// A merging launch (branch i > 0, epilogue.cuh) combines each of its rows with
// the O and LSE written before. Read from global memory in the epilogue, those
// loads (the LSE, then 4-byte pieces of O) sat on the consumers' critical path
// once per tile, with the tensor cores idle: LongNet's short segments (w =
// 2048: 16 key blocks a tile) pay it often. Here each warp copies its own 16
// rows (and their LSE) with cp.async when the tile starts; the epilogue waits
// for the copies (long done by then) and reads shared memory instead.
// cp.async rather than TMA: any row stride (dilated rows, r apart) and any LSE
// stride, no descriptors.
#pragma once

#include <cstdint>

#include "cuda_fa3/details/forward_params.hpp"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/tile_scheduler.cuh"

namespace dilated::cuda_fa3::details {

// Per consumer warp: 16 rows of O (16-bit) then their 16 LSE values, after
// the kernel's other kUsedBytes of shared memory (forward_kernel.cuh
// KernelMergeStage). A row's 16-byte chunk c sits at chunk c ^ (row % 8), so
// the epilogue's reads - 8 rows x 4 lanes, 4 bytes each, at one chunk index -
// hit 32 different banks.
template <class Shape, int kUsedBytes>
struct MergeStage {
  static constexpr int kRowBytes = Shape::kHeadDim * 2;
  static constexpr int kChunks = Shape::kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kWarpBytes = 16 * kRowBytes + 16 * 4;
  static constexpr int kOffset = (kUsedBytes + 127) / 128 * 128;
  static constexpr int kSmemBytes = kOffset + 4 * Shape::kConsumerWarpgroups * kWarpBytes + 1024;
  // Head dims 64 and 128 with 128-key blocks; 176-key blocks (208 KiB) and
  // head_dim 256 (192 KiB) have no room for it and read global memory as before.
  static constexpr bool kFits = kSmemBytes <= 227 * 1024;
  static_assert(kChunks >= 8, "the swizzle spans 8 chunks");

  // This warp's staging area.
  static __device__ __forceinline__ char* warp_area(char* smem, int wg, int warp) {
    return smem + kOffset + (4 * wg + warp) * kWarpBytes;
  }
  static __device__ __forceinline__ int chunk_offset(int row, int chunk) {
    return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
  }
};

// Starts the copies of the warp's 16 rows [row0, row0 + 16) (sparse rows of
// tile t; rows at or past t.q_end are skipped). Every lane of the warp calls it.
template <class T, class MS>
__device__ __forceinline__ void prefetch_merge_rows(const ForwardParams& p, const QueryTile& t,
                                                    std::int64_t row0, char* area, int lane) {
  // The warp's lanes read the previous tile's copies in its epilogue; all of
  // those reads come before any lane overwrites them.
  __syncwarp();
  const T* out = static_cast<const T*>(p.out) + t.b * p.out_stride_b + t.h * p.out_stride_h;
#pragma unroll
  for (int i = 0; i < 16 * MS::kChunks / 32; ++i) {
    const int idx = 32 * i + lane, r = idx / MS::kChunks, c = idx % MS::kChunks;
    const std::int64_t row = row0 + r;
    if (row < t.q_end) {
      const std::int64_t position = t.first + row * t.q_stride - p.q_window_begin;
      cp_async_16(area + MS::chunk_offset(r, c), out + position * p.out_stride_s + 8 * c);
    }
  }
  if (lane < 16 && row0 + lane < t.q_end) {
    const std::int64_t position = t.first + (row0 + lane) * t.q_stride - p.q_window_begin;
    cp_async_4(area + 16 * MS::kRowBytes + 4 * lane,
               p.lse + t.b * p.lse_stride_b + t.h * p.lse_stride_h + position * p.lse_stride_s);
  }
  cp_async_commit();
}

}  // namespace dilated::cuda_fa3::details
