// cuda_fa3/details/score_recompute.cuh - one warp's 16 rows of S = Q K^T for
// one key block, computed again from the shared-memory tiles with mma.sync.
//
// The forward's lazy softmax (softmax.cuh lazy_probabilities) overwrites S
// with exp2 of the scores against the stabilizer of earlier blocks. Where a
// score lay ~100 or more (log2 units) above it, that exp2 overflowed and the
// raw scores are gone: the warp that saw it computes them again here and
// runs the exact update. mma.sync is per warp, so neither the warpgroup nor
// a vote across it is involved (a per-block warpgroup vote, to recompute with
// wgmma, gave back about half of the lazy softmax's gain: H100,
// perf_tests/results/h100-fa3-2026-11-27-turns/run3). Its m16n8 accumulator
// layout is the wgmma m64nN layout restricted to the warp's 16 rows, so the
// scores land in the registers S came from. The key block is still resident:
// consume releases its stage after the softmax.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

// Shared-memory address of 16-byte chunk `chunk` (8 elements) of row `row` of
// a panel that TMA wrote with the 128-byte swizzle (ptx_sm90.cuh): the chunk
// index is XORed with the row's position in its 1024-byte group.
__device__ __forceinline__ std::uint32_t sw128_chunk(std::uint32_t panel, int row, int chunk) {
  return panel + std::uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t addr, std::uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a b for one m16n8k16 tile (f32 accumulators).
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float* d, const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// s (the wgmma accumulator layout of softmax.cuh) = the raw scores of the 16
// query rows starting at q_rows (panel 0; panels q_panel_bytes apart) against
// the kN keys of the block at k_block (panels k_panel_bytes apart). Every lane
// of the warp must call it. The lane's addresses go through an opaque move:
// hoisted out of this rare path by the compiler, they made the head_dim 256,
// causal, block-sparse and three-warpgroup kernels spill (ptxas, CUDA 13.0).
template <class T, int kD, int kN>
__device__ __forceinline__ void recompute_scores(const char* q_rows, int q_panel_bytes, const char* k_block,
                                                 int k_panel_bytes, int lane, float (&s)[kN / 2]) {
#pragma unroll
  for (int i = 0; i < kN / 2; ++i) s[i] = 0.f;
  // ldmatrix.x4: lane l gives the address of row l % 8 of matrix l / 8.
  // A: (rows 0-7, dims 0-7), (rows 8-15, dims 0-7), (rows 0-7, dims 8-15), (rows 8-15, dims 8-15);
  // B of two n8 tiles: (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), then keys 8-15 likewise.
  std::uint32_t q_lane, k_lane;
  asm volatile("mov.u32 %0, %1;" : "=r"(q_lane) : "r"(lane));
  k_lane = q_lane;
  const int m = q_lane / 8, row8 = q_lane % 8;
  const int q_row = row8 + 8 * (m & 1), q_hi = m >> 1;
  const int k_row = row8 + 8 * (int(k_lane / 8) >> 1), k_hi = int(k_lane / 8) & 1;
  const std::uint32_t q0 = smem_u32(q_rows), k0 = smem_u32(k_block);
#pragma unroll 1
  for (int kk = 0; kk < kD / 16; ++kk) {  // 16 head dims a step: two chunks of one panel
    const int panel = kk / 4, chunk = (kk % 4) * 2;
    std::uint32_t a[4];
    ldmatrix_x4(sw128_chunk(q0 + panel * q_panel_bytes, q_row, chunk + q_hi), a);
#pragma unroll
    for (int jj = 0; jj < kN / 16; ++jj) {
      std::uint32_t b[4];
      ldmatrix_x4(sw128_chunk(k0 + panel * k_panel_bytes, 16 * jj + k_row, chunk + k_hi), b);
      mma_m16n8k16<T>(s + 8 * jj, a, b[0], b[1]);
      mma_m16n8k16<T>(s + 8 * jj + 4, a, b[2], b[3]);
    }
  }
}

}  // namespace dilated::cuda_fa3::details
