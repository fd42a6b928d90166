// cuda_fa3/details/backward2_mainloop.cuh - a consumer warpgroup of the v2
// backward: 64 keys of the CTA's 128, walking the query blocks.
//
// Per query block of 64 (all products wgmma, f32 accumulation):
//   S^T  = K_w Q^T,  dP^T = V_w dO^T     SS, K-major, issued together
//   P^T  = exp2(S^T * scale*log2e - LSE)  (LSE = +inf for rows to skip)
//   dS^T = P^T * (c dP^T - delta)
//   dV  += (c P^T) dO,  dK += dS^T Q      RS: P^T, dS^T straight from registers
//   dS^T -> shared memory (both warpgroups), named barrier
//   dQ[:, half w] = dS K[:, half w]       SS, both operands read MN-major
//   (head_dim 64: dQ = dS_w K_w over the warpgroup's own keys instead)
// dV and dK are in flight while dS^T is being stored; dQ is issued right
// after the barrier. c is the output scale (head groups average branches).
#pragma once

#include <cstdint>

#include "cuda_fa3/details/backward2_epilogue.cuh"
#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/wgmma_ops.cuh"

namespace dilated::cuda_fa3::details {

template <class T, int N>
__device__ __forceinline__ void bwd2_pack(std::uint32_t (&a)[4][4], const float (&x)[N], float factor) {
  static_assert(N == 32, "one 64 x 64 block: 4 k-steps of 16");
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const auto packed = Pack2<T>::make(factor * x[8 * kk + 2 * i], factor * x[8 * kk + 2 * i + 1]);
      a[kk][i] = *reinterpret_cast<const std::uint32_t*>(&packed);
    }
}

template <class T, class Shape>
__device__ void bwd2_consume(const Backward2Args& args, const Bwd2Tile& t, char* smem, Bwd2Barriers bar,
                             int wg, int thread) {
  constexpr int kD = Shape::kHeadDim;
  const BackwardParams& p = args.p;
  const int warp = thread / 32, lane = thread % 32;
  const int row_in_wg[2] = {16 * warp + lane / 4, 16 * warp + lane / 4 + 8};
  const std::int64_t key0 = t.k_begin + 64 * wg;  // first key (sparse index) of this warpgroup
  const std::int64_t keys[2] = {key0 + row_in_wg[0], key0 + row_in_wg[1]};
  // Warp-uniform: every key of the warpgroup exists in the segment.
  const bool keys_full = key0 + 64 <= t.kept;

  const char* k_smem = smem + Shape::kOffsetK;
  const char* k_rows = k_smem + wg * 64 * 128;  // this warpgroup's keys in every K panel
  const char* v_rows = smem + Shape::kOffsetV + wg * 64 * 128;
  char* dq_smem = smem + Shape::kOffsetDQ + wg * Shape::kDqBytesPerWg;

  float dk[kD / 2], dv[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) dk[i] = dv[i] = 0.f;
  float s[32], dp[32];
  std::uint32_t ap[4][4], ads[4][4];

  mbar_wait(bar.kv_full, 0);
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % Shape::kStages;
    const char* q_smem = smem + Shape::kOffsetQ + stage * Shape::kTileBytesQ;
    const char* do_smem = smem + Shape::kOffsetDO + stage * Shape::kTileBytesQ;
    const float* lse_s = reinterpret_cast<const float*>(smem + Shape::kOffsetLse) + stage * Shape::kBlockM;
    const float* dlt_s = reinterpret_cast<const float*>(smem + Shape::kOffsetDelta) + stage * Shape::kBlockM;
    // head_dim 128: both warpgroups are at the same step here; a buffer is
    // rewritten two steps later, after both passed the next step's
    // kBarDsReady, i.e. after both retired the dQ product that read it.
    // head_dim 64: a warpgroup reads only the rows it wrote.
    char* ds_smem = smem + Shape::kOffsetDS + stage * Shape::kDsBytes;
    const std::int64_t q_begin = std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
    mbar_wait(&bar.qdo_full[stage], (step / Shape::kStages) & 1);

    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int panel = kk / 4, st = (kk % 4) * 2;  // +32 bytes per k-step inside a panel
      Wgmma<T, 64>::ss(s, desc_k_major_sw128(k_rows + panel * Shape::kPanelBytesKV) + st,
                       desc_k_major_sw128(q_smem + panel * Shape::kPanelBytesQ) + st, kk > 0);
    }
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int panel = kk / 4, st = (kk % 4) * 2;
      Wgmma<T, 64>::ss(dp, desc_k_major_sw128(v_rows + panel * Shape::kPanelBytesKV) + st,
                       desc_k_major_sw128(do_smem + panel * Shape::kPanelBytesQ) + st, kk > 0);
    }
    wgmma_commit();

    // Keys past the segment, or after a query (causal), need a mask; query
    // rows to skip already have LSE = +inf.
    const bool need_mask = !keys_full || (p.causal && key0 + 63 > q_begin);
    wgmma_wait<1>();  // S^T has landed; dP^T may still run
    fence_registers(s);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = 8 * j + 2 * (lane % 4);
      const float2 l = *reinterpret_cast<const float2*>(lse_s + col);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int idx = 4 * j + 2 * rr + c;
          float pr = fast_exp2(fmaf(s[idx], p.scale_log2, -(c ? l.y : l.x)));
          if (need_mask) {
            const std::int64_t q = q_begin + col + c;
            if (!(keys[rr] < t.kept && (!p.causal || keys[rr] <= q))) pr = 0.f;
          }
          s[idx] = pr;
        }
    }
    wgmma_wait<0>();
    fence_registers(dp);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 d = *reinterpret_cast<const float2*>(dlt_s + 8 * j + 2 * (lane % 4));
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int idx = 4 * j + 2 * rr + c;
          dp[idx] = s[idx] * (p.output_scale * dp[idx] - (c ? d.y : d.x));
        }
    }
    bwd2_pack<T>(ap, s, p.output_scale);
    bwd2_pack<T>(ads, dp, 1.f);

    // dV += (c P^T) dO and dK += dS^T Q: B is the 64-query block, MN-major
    // (its head_dim columns span the panels, kPanelBytesQ apart).
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kD>::rs_tb(dv, ap[kk], desc_mn_major_sw128(do_smem + kk * 16 * 128, Shape::kPanelBytesQ), 1);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kD>::rs_tb(dk, ads[kk], desc_mn_major_sw128(q_smem + kk * 16 * 128, Shape::kPanelBytesQ), 1);
    wgmma_commit();

    // dS^T rows (keys 64 wg + row) of 64 queries, 128-byte swizzled, while
    // the tensor cores run dV and dK.
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int key = 64 * wg + row_in_wg[rr], q = 8 * j + 2 * (lane % 4);
        const int byte = key * 128 + ((((q * 2) >> 4) ^ (key & 7)) << 4) + ((q * 2) & 15);
        *reinterpret_cast<std::uint32_t*>(ds_smem + byte) = ads[j / 2][(j % 2) * 2 + rr];
      }
    fence_proxy_async();  // wgmma reads dS through the async proxy
    if constexpr (Shape::kDqSplitKeys)
      named_sync(Shape::kBarDsOwn + wg, 128);  // only this warpgroup reads its rows
    else
      named_sync(Shape::kBarDsReady, 256);

    // head_dim 128: dQ[:, 64 wg .. 64 wg + 63] = dS K over all 128 keys,
    // B = K's panel w. head_dim 64: dQ (all columns) = dS_w K_w over this
    // warpgroup's 64 keys. A = dS^T read transposed (queries contiguous),
    // B = K rows (head_dim contiguous).
    const int key_row0 = Shape::kDqSplitKeys ? 64 * wg : 0;
    const char* kb = k_smem + (Shape::kDqSplitKeys ? 0 : wg * Shape::kPanelBytesKV);
    float dq[Shape::kDqCols / 2];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < Shape::kDqKeys / 16; ++kk) {
      const int row = key_row0 + 16 * kk;
      Wgmma<T, Shape::kDqCols>::ss_tt(dq, desc_mn_major_sw128(ds_smem + row * 128, Shape::kDsBytes),
                                      desc_mn_major_sw128(kb + row * 128, Shape::kPanelBytesKV), kk > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dv);
    fence_registers(dk);
    fence_registers(dq);
    keep_alive(ap);
    keep_alive(ads);
    // Every read of this stage's Q, dO, LSE and delta by this thread is done.
    mbar_arrive(&bar.qdo_empty[stage]);

    bwd2_store_dq<Shape>(args, t, dq_smem, dq, q_begin, wg, thread);
  }
  // The last reductions must finish reading shared memory before the CTA exits.
  if (thread == 0) bulk_wait_group<0>();
  bwd2_store_dkv<T, Shape>(args, t, dk, dv, wg, thread);
}

}  // namespace dilated::cuda_fa3::details
