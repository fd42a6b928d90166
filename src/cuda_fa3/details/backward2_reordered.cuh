// cuda_fa3/details/backward2_reordered.cuh - "v2r": a consumer warpgroup of
// the v2 backward (head_dim 128) with FlashAttention-3's product order inside
// a step and both transposed products of the next block issued behind it.
// Selected by DILATED_FA3_BWD_SCHEDULE=r|rw|rwl where v2p would run
// (backward2_launch.cu); rwl (this schedule with backward2_lean.cuh's
// softmax, addresses and dQ staging, and the dQ writer warp) is the default
// at head_dim 128.
//
// Same products, operands, masks, barriers and epilogues as v2p (read
// backward2_pipelined.cuh first). v2p issues dV and dK together, then dQ, and
// stages dQ under the next block's S^T only, issuing dP^T after the store
// (at head_dim 128 both S^T and dP^T alongside a live dQ spilled). Here dK is
// issued after dQ, so dQ retires first and is staged while dK runs; by the
// time the next block's S^T and dP^T are issued dQ's 32 registers are dead,
// so both fit beside dK, dV (128) and dK's A operand (16):
//
//   step i:   issue dV_i (RS: P^T_i)                         group A
//             dS^T_i -> smem; kBarDsReady (both warpgroups)
//             issue dQ_i (SS)                                group B
//             issue dK_i (RS: dS^T_i)                        group C
//             wait_group<1>: A, B retired (P^T_i dead, dQ_i in registers)
//             dQ_i out (bwd2_dq_out: own reduction or the writer warp)
//             last block: wait_group<0>; release stage i; done
//             else: wait Q/dO stage (i+1) % 2; issue S^T_{i+1}, dP^T_{i+1}
//                   wait_group<2>: dK_i retired -> release stage i
//                   prepare(i + 1) (retires S^T_{i+1}, dP^T_{i+1})
//
// The tensor cores see dV, dQ, dK, S^T, dP^T back to back with the dQ store
// and the stage handover under them; only the softmax tail (dS^T, packing)
// is exposed. Ring and dS^T-buffer safety are v2p's: stage i is released
// after every reader of it (S^T_i, dP^T_i, dV_i, dK_i, LSE/delta) retired,
// and block i + 1 reads the other stage; dS^T buffer i % 2 is rewritten in
// step i + 2 only after both warpgroups passed kBarDsReady of step i + 1,
// which each reaches after retiring dQ_i.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda_fa3/details/backward2_epilogue.cuh"
#include "cuda_fa3/details/backward2_lean.cuh"
#include "cuda_fa3/details/backward2_mainloop.cuh"
#include "cuda_fa3/details/backward2_pipelined.cuh"
#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/wgmma_ops.cuh"

namespace dilated::cuda_fa3::details {

// dK += dS^T Q (RS: dS^T of the block in registers), one commit group.
template <class T, class Shape>
__device__ __forceinline__ void bwd2r_issue_dk(float (&dk)[Shape::kHeadDim / 2], const std::uint32_t (&ads)[4][4],
                                               const char* q_smem) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    Wgmma<T, Shape::kHeadDim>::rs_tb(dk, ads[kk], desc_mn_major_sw128(q_smem + kk * 16 * 128, Shape::kPanelBytesQ),
                                     1);
  wgmma_commit();
}

// Lean: the same schedule with backward2_lean.cuh's softmax, addresses and
// staging (DILATED_FA3_BWD_SCHEDULE=rwl, the default; needs the dQ writer
// warp).
template <class T, class Shape, bool Lean = false>
__device__ void bwd2_consume_reordered(const Backward2Args& args, const Bwd2Tile& t, char* smem,
                                       Bwd2Barriers bar, int wg, int thread) {
  constexpr int kD = Shape::kHeadDim;
  static_assert(kD == 128 && !Shape::kDqSplitKeys, "v2r is the head_dim 128 schedule (dQ split by columns)");
  static_assert(Shape::kStages == 2, "v2r issues block i + 1 from the other stage while stage i is in use");
  const BackwardParams& p = args.p;
  const int warp = thread / 32, lane = thread % 32;
  const int row_in_wg[2] = {16 * warp + lane / 4, 16 * warp + lane / 4 + 8};
  const std::int64_t key0 = t.k_begin + 64 * wg;  // first key (sparse index) of this warpgroup
  const std::int64_t keys[2] = {key0 + row_in_wg[0], key0 + row_in_wg[1]};
  const bool keys_full = key0 + 64 <= t.kept;  // warp-uniform

  const char* k_smem = smem + Shape::kOffsetK;
  const char* k_rows = k_smem + wg * 64 * 128;
  const char* v_rows = smem + Shape::kOffsetV + wg * 64 * 128;
  auto q_stage = [&](int stage) { return smem + Shape::kOffsetQ + stage * Shape::kTileBytesQ; };
  auto do_stage = [&](int stage) { return smem + Shape::kOffsetDO + stage * Shape::kTileBytesQ; };

  float dk[kD / 2], dv[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) dk[i] = dv[i] = 0.f;
  float s[32], dp[32];
  std::uint32_t ap[4][4], ads[4][4];

  static_assert(!Lean || Shape::kDqStages == 2, "the lean schedule stages dQ for the writer warp");
  // The lean addresses (an empty struct without Lean, so rw's code is the
  // same as before the lean schedule existed).
  const std::conditional_t<Lean, Bwd2Lean<Shape>, Bwd2NoLean> lean(t, smem, wg, thread);

  mbar_wait(bar.kv_full, 0);
  mbar_wait(&bar.qdo_full[0], 0);
  bwd2p_issue_t<T, Shape>(s, k_rows, q_stage(0));
  bwd2p_issue_t<T, Shape>(dp, v_rows, do_stage(0));
  if constexpr (Lean)
    bwd2l_prepare<T, Shape>(p, t, lean, 0, lane, wg, s, dp, ap, ads);
  else
    bwd2p_prepare<T, Shape>(p, t, smem, 0, lane, key0, keys, keys_full, s, dp, ap, ads);

  // Step i begins with P^T_i (c-scaled; unscaled with Lean) in ap and dS^T_i
  // in ads, every wgmma retired.
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % Shape::kStages;
    const char* q_smem = q_stage(stage);
    const char* do_smem = do_stage(stage);
    char* ds_smem = smem + Shape::kOffsetDS + stage * Shape::kDsBytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kD>::rs_tb(dv, ap[kk], desc_mn_major_sw128(do_smem + kk * 16 * 128, Shape::kPanelBytesQ), 1);
    wgmma_commit();

    // dS^T (keys x queries, 128-byte swizzle) for dQ = dS K, as v2p.
    if constexpr (Lean) {
      bwd2l_store_ds<Shape>(lean, stage, ads);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const int key = 64 * wg + row_in_wg[rr], q = 8 * j + 2 * (lane % 4);
          const int byte = key * 128 + ((((q * 2) >> 4) ^ (key & 7)) << 4) + ((q * 2) & 15);
          *reinterpret_cast<std::uint32_t*>(ds_smem + byte) = ads[j / 2][(j % 2) * 2 + rr];
        }
    }
    fence_proxy_async();
    named_sync(Shape::kBarDsReady, 256);

    const char* kb = k_smem + wg * Shape::kPanelBytesKV;
    float dq[Shape::kDqCols / 2];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < Shape::kBlockN / 16; ++kk)
      Wgmma<T, Shape::kDqCols>::ss_tt(dq, desc_mn_major_sw128(ds_smem + 16 * kk * 128, Shape::kDsBytes),
                                      desc_mn_major_sw128(kb + 16 * kk * 128, Shape::kPanelBytesKV), kk > 0);
    wgmma_commit();
    bwd2r_issue_dk<T, Shape>(dk, ads, q_smem);
    // dV_i and dQ_i retired; dK_i keeps the tensor cores busy under the store.
    wgmma_wait<1>();
    fence_registers(dv);
    fence_registers(dq);
    keep_alive(ap);
    if constexpr (Lean)
      bwd2l_stage_dq<Shape>(lean, dq, p.scale, step, wg);
    else
      bwd2_dq_out<Shape>(args, t, smem, dq, step, wg, thread);

    if (step + 1 < t.q_blocks) {
      const int next = (step + 1) % Shape::kStages;
      mbar_wait(&bar.qdo_full[next], ((step + 1) / Shape::kStages) & 1);
      bwd2p_issue_t<T, Shape>(s, k_rows, q_stage(next));
      bwd2p_issue_t<T, Shape>(dp, v_rows, do_stage(next));
      wgmma_wait<2>();  // dK_i retired: every read of stage i by this thread is done
      fence_registers(dk);
      keep_alive(ads);
      mbar_arrive(&bar.qdo_empty[stage]);
      if constexpr (Lean)
        bwd2l_prepare<T, Shape>(p, t, lean, step + 1, lane, wg, s, dp, ap, ads);
      else
        bwd2p_prepare<T, Shape>(p, t, smem, step + 1, lane, key0, keys, keys_full, s, dp, ap, ads);
    } else {
      wgmma_wait<0>();
      fence_registers(dk);
      keep_alive(ads);
      mbar_arrive(&bar.qdo_empty[stage]);
    }
  }
  // The last reductions must finish reading shared memory before the CTA
  // exits (with the writer warp, the writer waits for its own).
  if (Shape::kDqStages == 1 && thread == 0) bulk_wait_group<0>();
  if constexpr (Lean) {
    // P^T was packed without the output scale c: dV = (c P)^T dO = c (P^T dO).
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) dv[i] *= p.output_scale;
  }
  bwd2_store_dkv<T, Shape>(args, t, dk, dv, wg, thread);
}

}  // namespace dilated::cuda_fa3::details
