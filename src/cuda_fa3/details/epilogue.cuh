// cuda_fa3/details/epilogue.cuh - writes a consumer thread's two rows of O
// (16-bit) and their LSE, merging with what earlier branches wrote.
//
// LongNet's merge (Eq. 10) weighs branch outputs by their softmax
// denominators: with L = logaddexp(L_old, L_i),
//   O = O_old * exp(L_old - L) + O_i * exp(L_i - L).
// Branches run as successive launches on one stream, so this read-modify-
// write never races; it costs no workspace beyond out and lse themselves.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "cuda_fa3/details/forward_params.hpp"
#include "cuda_fa3/details/merge_stage.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"

namespace dilated::cuda_fa3::details {

template <class T>
struct Pack2;
template <>
struct Pack2<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ type make(float a, float b) { return __floats2bfloat162_rn(a, b); }
  static __device__ __forceinline__ float2 unpack(type v) { return __bfloat1622float2(v); }
};
template <>
struct Pack2<__half> {
  using type = __half2;
  static __device__ __forceinline__ type make(float a, float b) { return __floats2half2_rn(a, b); }
  static __device__ __forceinline__ float2 unpack(type v) { return __half22float2(v); }
};

// The merge's weights for one row: O = O_old * w_old + O_i * w_new, with
// LSE lse_out (output_scale folded into w_new).
struct MergeWeights {
  float w_new, w_old, lse_out;
  __device__ __forceinline__ MergeWeights(float old, float lse, float output_scale) {
    const float hi = fmaxf(old, lse);
    if (isnan(old) || isnan(lse)) {
      // A NaN score (NaN in an attended K row) makes that side's LSE NaN;
      // fmaxf/fminf would drop it (hi = the other side: out NaN but lse
      // finite, or -inf when merged into the identity), and the backward
      // would then recompute finite P for that row: keep the row's lse NaN
      // too, as the reference does (found by test_fa3_window_numerics).
      lse_out = NAN;
      w_old = w_new = NAN;
    } else if (hi == -INFINITY) {
      w_new = 0.f;  // neither side saw a key: keep O = 0, LSE = -inf
      w_old = 1.f;
      lse_out = lse;
    } else {
      lse_out = hi + log1pf(expf(fminf(old, lse) - hi));
      w_old = expf(old - lse_out);
      w_new = output_scale * expf(lse - lse_out);
    }
  }
};

template <class T, int HeadDim>
__device__ __forceinline__ void store_rows(const ForwardParams& p, int b, int h,
                                           const std::int64_t (&position)[2], const bool (&valid)[2],
                                           float (&o)[HeadDim / 2], const float (&lse)[2], int lane) {
  using P2 = Pack2<T>;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (!valid[r]) continue;
    float w_new = p.output_scale, w_old = 0.f, lse_out = lse[r];
    float* lse_ptr = p.lse + b * p.lse_stride_b + h * p.lse_stride_h + position[r] * p.lse_stride_s;
    if (p.merge) {
      const MergeWeights m(*lse_ptr, lse[r], p.output_scale);
      w_new = m.w_new;
      w_old = m.w_old;
      lse_out = m.lse_out;
    }
    T* row = static_cast<T*>(p.out) + b * p.out_stride_b + position[r] * p.out_stride_s +
             h * p.out_stride_h;
#pragma unroll
    for (int j = 0; j < HeadDim / 8; ++j) {
      auto* dst = reinterpret_cast<typename P2::type*>(row + 8 * j + 2 * (lane % 4));
      float x = o[4 * j + 2 * r] * w_new, y = o[4 * j + 2 * r + 1] * w_new;
      if (p.merge) {
        const float2 prev = P2::unpack(*dst);
        x = fmaf(prev.x, w_old, x);
        y = fmaf(prev.y, w_old, y);
      }
      *dst = P2::make(x, y);
    }
    if (lane % 4 == 0) *lse_ptr = lse_out;
  }
}

// store_rows without a merge, in 16-byte stores. A thread holds 16-bit pairs
// (4 bytes) of its rows, the four threads of a row interleaved every 8
// columns, so store_rows writes HeadDim / 8 4-byte pieces per row. Here the
// four trade words (a 4 x 4 transpose of 32-bit words per 32 columns: two
// shuffle rounds, 4 shuffles) so each writes 8 consecutive columns at a
// time: HeadDim / 32 stores per row. For every launch that writes its rows
// outright (block-sparse tiles, ~13 key blocks at 90% sparsity and N = 16K;
// LongNet's first branch, 16 key blocks a tile at w = 2048), where the
// epilogue is a visible share of a tile. Every lane of the warp must call it.
// write_rows_wide scales row r by scale[r]: output_scale for rows written
// outright (store_rows_wide, below), 1 for merged ones (store_rows_merged).
template <class T, int HeadDim>
__device__ __forceinline__ void write_rows_wide(const ForwardParams& p, int b, int h,
                                                const std::int64_t (&position)[2], const bool (&valid)[2],
                                                const float (&o)[HeadDim / 2], const float (&scale)[2],
                                                const float (&lse)[2], int lane) {
  using P2 = Pack2<T>;
  const int q = lane % 4;
  const bool odd = q & 1, high = q & 2;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // w[j]: columns 8 j + 2 q, + 1 of row r; after the transpose w[4 m + i]
    // holds columns 8 (4 m + q) + 2 i, + 1.
    std::uint32_t w[HeadDim / 8];
#pragma unroll
    for (int j = 0; j < HeadDim / 8; ++j) {
      const auto packed = P2::make(o[4 * j + 2 * r] * scale[r], o[4 * j + 2 * r + 1] * scale[r]);
      w[j] = *reinterpret_cast<const std::uint32_t*>(&packed);
    }
#pragma unroll
    for (int m = 0; m < HeadDim / 32; ++m) {
      std::uint32_t* a = w + 4 * m;
      // Lanes q, q ^ 1: the even lane ends with both lanes' word 0 (or 2), the odd with word 1 (or 3).
      std::uint32_t t = __shfl_xor_sync(0xffffffffu, odd ? a[0] : a[1], 1);
      if (odd) a[0] = t; else a[1] = t;
      t = __shfl_xor_sync(0xffffffffu, odd ? a[2] : a[3], 1);
      if (odd) a[2] = t; else a[3] = t;
      // Lanes q, q ^ 2: the low pair gives words of columns 4 m + 2, 3 and takes 4 m + 0, 1's.
      const std::uint32_t t0 = __shfl_xor_sync(0xffffffffu, high ? a[0] : a[2], 2);
      const std::uint32_t t1 = __shfl_xor_sync(0xffffffffu, high ? a[1] : a[3], 2);
      if (high) {
        a[0] = t0;
        a[1] = t1;
      } else {
        a[2] = t0;
        a[3] = t1;
      }
    }
    if (!valid[r]) continue;
    T* row = static_cast<T*>(p.out) + b * p.out_stride_b + position[r] * p.out_stride_s +
             h * p.out_stride_h;  // 16-byte aligned: plan.cu requires it of out and its strides
#pragma unroll
    for (int m = 0; m < HeadDim / 32; ++m)
      *reinterpret_cast<uint4*>(row + 8 * (4 * m + q)) = make_uint4(w[4 * m], w[4 * m + 1], w[4 * m + 2], w[4 * m + 3]);
    if (q == 0) p.lse[b * p.lse_stride_b + h * p.lse_stride_h + position[r] * p.lse_stride_s] = lse[r];
  }
}

template <class T, int HeadDim>
__device__ __forceinline__ void store_rows_wide(const ForwardParams& p, int b, int h,
                                                const std::int64_t (&position)[2], const bool (&valid)[2],
                                                const float (&o)[HeadDim / 2], const float (&lse)[2], int lane) {
  const float scale[2] = {p.output_scale, p.output_scale};
  write_rows_wide<T, HeadDim>(p, b, h, position, valid, o, scale, lse, lane);
}

// store_rows' merge with the old rows and LSE from the warp's staging area
// (merge_stage.cuh: prefetch_merge_rows at the tile start), written in
// 16-byte stores like store_rows_wide. Every lane of the warp must call it.
template <class T, class MS, int HeadDim>
__device__ __forceinline__ void store_rows_merged(const ForwardParams& p, int b, int h,
                                                  const std::int64_t (&position)[2], const bool (&valid)[2],
                                                  float (&o)[HeadDim / 2], const float (&lse)[2],
                                                  const char* area, int lane) {
  using P2 = Pack2<T>;
  cp_async_wait_all();  // this lane's copies
  __syncwarp();         // and every other lane's
  const float one[2] = {1.f, 1.f};
  float lse_out[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = lane / 4 + 8 * r;  // of the warp's 16 (staging rows = accumulator rows)
    const MergeWeights m(reinterpret_cast<const float*>(area + 16 * MS::kRowBytes)[row], lse[r], p.output_scale);
    lse_out[r] = m.lse_out;
#pragma unroll
    for (int j = 0; j < HeadDim / 8; ++j) {
      const float2 prev = P2::unpack(
          *reinterpret_cast<const typename P2::type*>(area + MS::chunk_offset(row, j) + 4 * (lane % 4)));
      o[4 * j + 2 * r] = fmaf(prev.x, m.w_old, o[4 * j + 2 * r] * m.w_new);
      o[4 * j + 2 * r + 1] = fmaf(prev.y, m.w_old, o[4 * j + 2 * r + 1] * m.w_new);
    }
  }
  write_rows_wide<T, HeadDim>(p, b, h, position, valid, o, one, lse_out, lane);
}

}  // namespace dilated::cuda_fa3::details
