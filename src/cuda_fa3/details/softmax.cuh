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
      const float sum = exp_row<kWeighted>(s, r, scale_log2, log2_m, base);
      row_sum[r] = row_sum[r] * correction[r] + sum;
    }
  }

  // Row r's scores become exp2(s scale + log2 m - base) (m: the column
  // parity's weight, kWeighted); returns this thread's sum of them.
  template <bool kWeighted>
  __device__ __forceinline__ static float exp_row(float (&s)[kS], int r, float scale_log2, const float* log2_m,
                                                  float base) {
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
    return sum;
  }

  // Lazy update, for the blocks after a tile's first (consume): the
  // probabilities use the stabilizer row_max as it stands, without this
  // block's max - no max over the scores (a compare per score), no quad
  // shuffles, no correction factor, and the exp2s do not wait for a max.
  // The stabilizer need not be the running max, only keep exp2 in range: a
  // thread's probabilities of a row are accepted while their sum stays <=
  // kLazyLimit (so are all of them; P V, the row sums and the LSE, which is
  // row_max + log2(sum), are exact for any stabilizer). Past the limit (a
  // score more than 8 above the stabilizer, log2 units: FA4's rescaling
  // threshold), settle_lazy raises the rows' stabilizers by powers of two (an
  // exact rescale of the probabilities) and reports a correction as update
  // does; where an exp2 overflowed (lazy_overflowed) the raw scores are gone,
  // and the caller computes them again and runs update. H100, LongNet 1M d128
  // and dense 16K: about -10% time (perf_tests/results/h100-fa3-2026-11-27-turns).
  //
  // lazy_probabilities turns s into probabilities and sum into this thread's
  // row sums; true if both are within the limit (NaN is not: settle_lazy
  // keeps it, as update would). A row with no stabilizer yet (-inf: no
  // visible key so far) takes 0. Nothing is committed until accept_lazy or
  // settle_lazy.
  static constexpr float kLazyLimit = 256.f;
  template <bool kWeighted>
  __device__ __forceinline__ bool lazy_probabilities(float (&s)[kS], float scale_log2, const float* log2_m,
                                                     float (&sum)[2]) const {
#pragma unroll
    for (int r = 0; r < 2; ++r) sum[r] = exp_row<kWeighted>(s, r, scale_log2, log2_m, lazy_base(r));
    return sum[0] <= kLazyLimit && sum[1] <= kLazyLimit;
  }
  __device__ __forceinline__ void accept_lazy(float (&correction)[2], const float (&sum)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      correction[r] = 1.f;
      row_max[r] = lazy_base(r);
      row_sum[r] += sum[r];
    }
  }
  // Whether a row of this warp has a probability of 2^100 or more (an
  // overflowed exp2 among them). Warp-uniform.
  __device__ __forceinline__ bool lazy_overflowed(const float (&s)[kS]) const {
    bool over = false;
#pragma unroll
    for (int i = 0; i < kS; ++i) over |= !(s[i] < 0x1p100f) && !isnan(s[i]);
    return __any_sync(0xffffffffu, over);
  }
  // Each row whose largest probability exceeds the limit moves its
  // stabilizer up by d, 2^d > that probability (d <= 100, so 2^-d is a
  // normal float), and scales its probabilities by 2^-d, exactly.
  __device__ __forceinline__ void settle_lazy(float (&s)[kS], float (&correction)[2], const float (&sum)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = 0.f;  // (fmaxf drops NaN: a NaN probability stays NaN below)
#pragma unroll
      for (int j = 0; j < kS / 4; ++j) m = fmaxf(m, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
      const float emax = quad_max(m);
      const int d = emax > kLazyLimit ? ((__float_as_int(emax) >> 23) & 0xff) - 126 : 0;  // emax = 1.f x 2^(d-1)
      const float f = __int_as_float((127 - d) << 23);
#pragma unroll
      for (int j = 0; j < kS / 4; ++j) {
        s[4 * j + 2 * r] *= f;
        s[4 * j + 2 * r + 1] *= f;
      }
      correction[r] = f;
      row_max[r] = lazy_base(r) + float(d);
      row_sum[r] = (row_sum[r] + sum[r]) * f;
    }
  }
  __device__ __forceinline__ float lazy_base(int r) const { return row_max[r] == -INFINITY ? 0.f : row_max[r]; }

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
