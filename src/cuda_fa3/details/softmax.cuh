// cuda_fa3/details/softmax.cuh - online softmax over the rows a consumer
// thread holds in the wgmma accumulator layout.
//
// m64nN accumulator layout: thread `lane` of warp w (in its warpgroup) holds
// rows 16w + lane/4 ("row 0") and 16w + lane/4 + 8 ("row 1"); of each 8-column
// chunk j it holds columns 8j + 2(lane%4) + {0,1}: s[4j+0..1] for row 0 and
// s[4j+2..3] for row 1. A row is spread over the 4 threads of a quad.
#pragma once

#include <cmath>

#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

template <int BlockN, int HeadDim>
struct OnlineSoftmax {
  static constexpr int kS = BlockN / 2;   // accumulator floats of S per thread
  static constexpr int kO = HeadDim / 2;  // accumulator floats of O per thread
  float row_max[2] = {-INFINITY, -INFINITY};  // in log2 units (scores * scale * log2 e)
  float row_sum[2] = {0.f, 0.f};              // thread-partial; reduced over the quad at the end

  // s holds raw scores (masked ones at -inf). Turns s into probabilities
  // relative to the new running max; `correction` receives the factor by
  // which O must be rescaled (applied by the caller once the previous P V
  // product, still in flight on the tensor cores, has landed).
  __device__ __forceinline__ void update(float (&s)[kS], float (&correction)[2], float scale_log2) {
    update_impl<false>(s, correction, scale_log2, nullptr);
  }
  // LongNet chains (longnet_dedup.hpp): the probability of column parity c
  // is weighted by its multiplicity m_c, log2_m[c] = log2(m_c), the same for
  // both rows and every block of the tile: P = m exp2(s scale - max), one
  // add per row and parity per block. The max stays unweighted (m <= 4); the
  // row sum, P V and so the LSE carry the weights.
  __device__ __forceinline__ void update_weighted(float (&s)[kS], float (&correction)[2], float scale_log2,
                                                  const float (&log2_m)[2]) {
    update_impl<true>(s, correction, scale_log2, log2_m);
  }

  template <bool kWeighted>
  __device__ __forceinline__ void update_impl(float (&s)[kS], float (&correction)[2], float scale_log2,
                                              const float* log2_m) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // Max of the raw scores, scaled once (the plan only admits positive scales).
      float raw = -INFINITY;
#pragma unroll
      for (int j = 0; j < kS / 4; ++j) raw = fmaxf(raw, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
      const float mx = fmaxf(row_max[r], quad_max(raw) * scale_log2);
      // A row with no visible key yet keeps max -inf; subtract 0 instead so
      // exp2 gives 0 rather than NaN.
      const float base = mx == -INFINITY ? 0.f : mx;
      correction[r] = fast_exp2(row_max[r] - base);
      row_max[r] = mx;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kS / 4; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float add = kWeighted ? log2_m[c] - base : -base;
          const float e = fast_exp2(fmaf(s[4 * j + 2 * r + c], scale_log2, add));
          s[4 * j + 2 * r + c] = e;
          sum += e;
        }
      }
      row_sum[r] = row_sum[r] * correction[r] + sum;
    }
  }

  __device__ __forceinline__ static void rescale(float (&o)[kO], const float (&correction)[2]) {
#pragma unroll
    for (int j = 0; j < kO / 4; ++j) {
      o[4 * j + 0] *= correction[0];
      o[4 * j + 1] *= correction[0];
      o[4 * j + 2] *= correction[1];
      o[4 * j + 3] *= correction[1];
    }
  }

  // Normalises O and returns the natural-log LSE of both rows (-inf for a row
  // that saw no key, NaN for a row with a NaN score). The NaN case needs its
  // own branch: fmaxf drops a NaN score from row_max, so only the sum carries
  // it, and `sum > 0` is false for NaN - which gave such rows lse = -inf, a
  // finite-looking merge weight and finite dK/dV in the backward
  // (test_fa3_window_numerics' NanInAKeyRowNonCausal, H100 2026-11-27).
  __device__ __forceinline__ void finish(float (&o)[kO], float (&lse)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(row_sum[r]);
      const float inv = sum > 0.f ? 1.f / sum : (sum == 0.f ? 0.f : NAN);
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) {
        o[4 * j + 2 * r] *= inv;
        o[4 * j + 2 * r + 1] *= inv;
      }
      lse[r] = sum > 0.f ? (row_max[r] + log2f(sum)) * 0.69314718055994531f : (sum == 0.f ? -INFINITY : NAN);
    }
  }
};

}  // namespace dilated::cuda_fa3::details
