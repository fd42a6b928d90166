// cuda_fa3/details/backward2_lean.cuh - the per-step non-tensor work of the
// v2r consumer (backward2_reordered.cuh) with fewer instructions: "lean"
// (DILATED_FA3_BWD_SCHEDULE=rwl).
//
// Why: in rw's SASS (CUDA 13, sm_90a) a step of one consumer warp is about
// 1,100 instructions for 16 HGMMA, and two consumer warps share each SM
// sub-partition, so the softmax between the products is issue-bound where it
// is exposed (after dP^T retires, before dV can be issued). Most of it is
// overhead around 32 exp2 per thread:
//   - the causal / segment-end mask was computed for every element of every
//     block with 64-bit compares, hoisted out of the per-element branch even
//     where no mask was needed;
//   - LSE, delta, the dS^T and dQ staging went through generic 64-bit
//     addresses (LD.E / ST.E) with per-element swizzle arithmetic;
//   - P^T was multiplied by the output scale before packing.
// Here: a warp-uniform branch between an unmasked and a masked loop, the mask
// as one 32-bit compare per element against per-thread limits; ld/st.shared
// with 32-bit addresses whose swizzle is a thread constant XOR an immediate;
// P^T packed unscaled (the output scale is applied to dV once at the end) and
// before the dP^T wait, so the packing runs under dP^T. The consumer loop
// went from 1,102 SASS instructions to about 650 on an unmasked step.
// Tried and dropped (ptxas, CUDA 13): issuing dV before computing dS^T, so
// that dS^T runs under dV - the fp32 dP^T crossing the loop edge made ptxas
// spill 56-488 bytes and serialize every wgmma (C7512), also with dS^T from
// the 16-bit P^T.
#pragma once

#include <climits>
#include <cstdint>

#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

__device__ __forceinline__ float2 bwd2l_ld_f32x2(std::uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ void bwd2l_st_b32(std::uint32_t addr, std::uint32_t x) {
  asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(x) : "memory");
}
__device__ __forceinline__ void bwd2l_st_f32x2(std::uint32_t addr, float x, float y) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(x), "f"(y) : "memory");
}

// Per-thread constants of a consumer warpgroup (thread = 0..127).
template <class Shape>
struct Bwd2Lean {
  std::uint32_t lse, delta;  // LSE / delta of stage 0 at this thread's first column
  std::uint32_t ds[2];       // dS^T rows of this thread (stage 0), swizzle of chunk 0
  std::uint32_t dq[2];       // dQ staging rows (buffer 0 of this warpgroup), swizzle of box 0
  int key_rel[2];            // the thread's two keys, relative to the CTA's first key
  int kept_rel;              // keys of the CTA inside the segment (<= 128)

  __device__ __forceinline__ Bwd2Lean(const Bwd2Tile& t, const char* smem, int wg, int thread) {
    const int lane = thread % 32, warp = thread / 32;
    const int col = 2 * (lane % 4);
    lse = smem_u32(smem + Shape::kOffsetLse) + 4 * col;
    delta = smem_u32(smem + Shape::kOffsetDelta) + 4 * col;
    const std::uint32_t ds0 = smem_u32(smem + Shape::kOffsetDS);
    const std::uint32_t dq0 = smem_u32(smem + Shape::kOffsetDQ + wg * Shape::kDqStages * Shape::kDqBytesPerWg);
    // Row r % 8 == lane / 4 for both rows of the thread (16 * warp + lane / 4 + 8 rr).
    const std::uint32_t x = std::uint32_t(lane / 4);
    // dS^T: byte (row * 128) + ((chunk ^ (row & 7)) << 4) + 4 (lane % 4), chunk = j.
    // dQ: 8-byte pairs, byte in row = 32 (j % 4) + 8 (lane % 4) -> chunk 2 (j % 4) + (lane % 4) / 2.
    const std::uint32_t dq_in_row = (((std::uint32_t((lane % 4) / 2)) ^ x) << 4) | (std::uint32_t(lane % 2) << 3);
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int row = 16 * warp + lane / 4 + 8 * rr;
      key_rel[rr] = 64 * wg + row;
      ds[rr] = ds0 + std::uint32_t(key_rel[rr]) * 128 + (x << 4) + 4 * std::uint32_t(lane % 4);
      dq[rr] = dq0 + std::uint32_t(row) * 128 + dq_in_row;
    }
    const std::int64_t kept = t.kept - t.k_begin;
    kept_rel = kept < Shape::kBlockN ? int(kept) : Shape::kBlockN;
  }
};

// Stands in for Bwd2Lean where the lean schedule is off.
struct Bwd2NoLean {
  template <class... A>
  __device__ __forceinline__ explicit Bwd2NoLean(const A&...) {}
};

// P^T = exp2(S^T scale - LSE) in place; masked elements (keys past the
// segment, keys after the query when causal) are 0. l: LSE pairs of this
// thread's columns 8 j + 2 (lane % 4) + {0, 1}.
template <bool Masked>
__device__ __forceinline__ void bwd2l_probs(float (&s)[32], const float2 (&l)[8], float scale_log2,
                                            const int (&thr)[2]) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int idx = 4 * j + 2 * rr + c;
        float pr = fast_exp2(fmaf(s[idx], scale_log2, -(c ? l[j].y : l[j].x)));
        // Valid iff 8 j + c >= thr[rr] (see bwd2l_mask_limits).
        if constexpr (Masked) pr = (8 * j + c < thr[rr]) ? 0.f : pr;
        s[idx] = pr;
      }
}

// thr[rr]: the element (key rr, column 8 j + c of this thread) is kept iff
// 8 j + c >= thr[rr]. Keys past the segment: INT_MAX (never kept). Causal,
// key k_begin + key_rel <= query q_begin + 8 j + 2 (lane % 4) + c:
// thr = key_rel + (k_begin - q_begin) - 2 (lane % 4), the difference clamped
// (|thr| beyond 256 decides the same way). Non-causal: INT_MIN (always kept).
template <class Shape>
__device__ __forceinline__ void bwd2l_mask_limits(const Bwd2Lean<Shape>& L, bool causal, std::int64_t k_begin,
                                                  std::int64_t q_begin, int lane, int (&thr)[2]) {
  std::int64_t diff = k_begin - q_begin;
  diff = diff > 1024 ? 1024 : (diff < -1024 ? -1024 : diff);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int causal_thr = L.key_rel[rr] + int(diff) - 2 * (lane % 4);
    thr[rr] = L.key_rel[rr] >= L.kept_rel ? INT_MAX : (causal ? causal_thr : INT_MIN);
  }
}

// dS^T = P^T (c dP^T - delta) in place of dP^T.
__device__ __forceinline__ void bwd2l_dscores(const float (&s)[32], float (&dp)[32], const float2 (&d)[8], float c) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
#pragma unroll
      for (int cc = 0; cc < 2; ++cc) {
        const int idx = 4 * j + 2 * rr + cc;
        dp[idx] = s[idx] * fmaf(c, dp[idx], -(cc ? d[j].y : d[j].x));
      }
}

template <class T>
__device__ __forceinline__ void bwd2l_pack(std::uint32_t (&a)[4][4], const float (&x)[32]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const auto packed = Pack2<T>::make(x[8 * kk + 2 * i], x[8 * kk + 2 * i + 1]);
      a[kk][i] = *reinterpret_cast<const std::uint32_t*>(&packed);
    }
}

// The two halves of block `step`'s softmax backward. First, with S^T and
// dP^T pending as the last two wgmma groups: P^T (fp32 in s, packed and
// unscaled in ap), then dP^T retired (fp32 in dp); nothing pending on return.
template <class T, class Shape>
__device__ __forceinline__ void bwd2l_probs_half(const BackwardParams& p, const Bwd2Tile& t,
                                                 const Bwd2Lean<Shape>& L, int step, int lane, int wg,
                                                 float (&s)[32], float (&dp)[32], std::uint32_t (&ap)[4][4]) {
  const int stage = step % Shape::kStages;
  float2 l[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) l[j] = bwd2l_ld_f32x2(L.lse + 4 * stage * Shape::kBlockM + 32 * j);
  const std::int64_t q_begin = std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
  const std::int64_t key0 = t.k_begin + 64 * wg;
  // Warp-uniform: keys past the segment, or after a query (causal).
  const bool need_mask = key0 + 64 > t.kept || (p.causal && key0 + 63 > q_begin);
  wgmma_wait<1>();  // S^T has landed; dP^T may still run
  fence_registers(s);
  if (need_mask) {
    int thr[2];
    bwd2l_mask_limits<Shape>(L, p.causal, t.k_begin, q_begin, lane, thr);
    bwd2l_probs<true>(s, l, p.scale_log2, thr);
  } else {
    const int thr[2] = {0, 0};
    bwd2l_probs<false>(s, l, p.scale_log2, thr);
  }
  bwd2l_pack<T>(ap, s);  // under dP^T
  wgmma_wait<0>();
  fence_registers(dp);
}

// Second: dS^T = P^T (c dP^T - delta) (fp32 in dp, packed in ads).
// (Split from the first half to try computing dS^T under dV; see the top.)
template <class T, class Shape>
__device__ __forceinline__ void bwd2l_dscores_half(const BackwardParams& p, const Bwd2Lean<Shape>& L, int step,
                                                   const float (&s)[32], float (&dp)[32],
                                                   std::uint32_t (&ads)[4][4]) {
  const int stage = step % Shape::kStages;
  float2 d[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) d[j] = bwd2l_ld_f32x2(L.delta + 4 * stage * Shape::kBlockM + 32 * j);
  bwd2l_dscores(s, dp, d, p.output_scale);
  bwd2l_pack<T>(ads, dp);
}

// Both halves: block `step` from S^T, dP^T pending to everything retired
// (bwd2p_prepare's contract, backward2_pipelined.cuh).
template <class T, class Shape>
__device__ __forceinline__ void bwd2l_prepare(const BackwardParams& p, const Bwd2Tile& t, const Bwd2Lean<Shape>& L,
                                              int step, int lane, int wg, float (&s)[32], float (&dp)[32],
                                              std::uint32_t (&ap)[4][4], std::uint32_t (&ads)[4][4]) {
  bwd2l_probs_half<T, Shape>(p, t, L, step, lane, wg, s, dp, ap);
  bwd2l_dscores_half<T, Shape>(p, L, step, s, dp, ads);
}

// dS^T of this thread (packed, accumulator layout) into buffer `stage`:
// 128 keys x 64 queries, 128-byte swizzle, as bwd2_consume_reordered.
template <class Shape>
__device__ __forceinline__ void bwd2l_store_ds(const Bwd2Lean<Shape>& L, int stage,
                                               const std::uint32_t (&ads)[4][4]) {
  const std::uint32_t off = std::uint32_t(stage * Shape::kDsBytes);
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) bwd2l_st_b32((L.ds[rr] + off) ^ std::uint32_t(j << 4), ads[j / 2][(j % 2) * 2 + rr]);
}

// bwd2_stage_dq (backward2_epilogue.cuh) with the lean addresses: wait for
// buffer step % 2 to be free (step >= 2), stage dQ times the softmax scale,
// fence for the TMA, arrive for the writer warp.
template <class Shape>
__device__ __forceinline__ void bwd2l_stage_dq(const Bwd2Lean<Shape>& L, const float (&dq)[Shape::kDqCols / 2],
                                               float scale, int step, int wg) {
  static_assert(Shape::kDqStages == 2, "the dQ writer protocol double-buffers the staging");
  const int buf = step % 2;
  if (step >= 2) named_sync(Shape::kBarDqEmpty + 2 * wg + buf, 128 + 32);
  const std::uint32_t off = std::uint32_t(buf * Shape::kDqBytesPerWg);
#pragma unroll
  for (int j = 0; j < Shape::kDqCols / 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
      bwd2l_st_f32x2(((L.dq[rr] + off) ^ std::uint32_t((j % 4) << 5)) + std::uint32_t((j / 4) * Shape::kDqBoxBytes),
                     scale * dq[4 * j + 2 * rr], scale * dq[4 * j + 2 * rr + 1]);
  fence_proxy_async();  // make the generic-proxy stores visible to the TMA
  named_arrive(Shape::kBarDqFull + 2 * wg + buf, 128 + 32);
}

}  // namespace dilated::cuda_fa3::details
