// cuda_fa3/details/backward2_pipelined.cuh - "v2p": a consumer warpgroup of
// the v2 backward with its products software-pipelined by one query block.
// Selected by BackwardKernel::v2_pipelined / DILATED_FA3_BWD=v2p only; v2
// (backward2_mainloop.cuh) is unchanged and stays the default.
//
// Same products, operands, masks, barriers and epilogues as bwd2_consume
// (read that first); only the order of issue and retirement differs. The
// loop is rotated so that a step starts with block i's packed P^T/dS^T in
// registers and no wgmma in flight:
//
//   before the loop:  wait Q/dO stage 0; issue S^T_0, dP^T_0; prepare(0)
//   step i:           issue dV, dK (RS); dS^T -> smem; kBarDsReady; issue dQ_i
//                     wait_group<1>: dV/dK retired (dQ_i may run)
//                       -> P^T, dS^T registers dead; every read of stage i's
//                          Q, dO, LSE, delta done -> arrive qdo_empty[i % 2]
//                     last block: wait_group<0>; bwd2_store_dq; done
//                     else: wait Q/dO stage (i+1) % 2; issue S^T_{i+1}
//                           wait_group<1>: dQ_i retired (S^T_{i+1} runs)
//                           bwd2_store_dq (smem staging + TMA reduce-add)
//                           issue dP^T_{i+1}; prepare(i + 1)
//   prepare(j):       wait S^T_j; P^T = exp2(..); wait dP^T_j; dS^T; pack
//                     (everything retired on return)
//
// Why this shape (ptxas, CUDA 13.1, checked with -Xptxas -v and the SASS):
// a wgmma still in flight across the loop's back edge or a branch join made
// ptxas serialize every wgmma (C7514/C7515: a wait after each HGMMA), and
// carrying the fp32 s/dp accumulators across the back edge spilled (C7512);
// carrying the packed 16-bit P^T/dS^T (32 registers) does neither. Issuing
// dP^T_{i+1} with S^T_{i+1} before the dQ store (Bwd2pConfig::kPipeDp) fits
// head_dim 64 only: at head_dim 128 dK, dV (128) + dQ (32) + S^T + dP^T (64)
// spilled 512 bytes, so there dP^T_{i+1} is issued after the store and runs
// under the exp2 of P^T_{i+1}.
//
// Ring safety: the stage released in step i (i % 2) and the stage read by the
// early issue ((i+1) % 2) differ (kStages == 2). The released stage's readers
// (S^T_i, dP^T_i, dV_i, dK_i, the LSE/delta loads) have all retired before
// the arrive; the producer refills it with block i + 2. Block i + 1's stage
// was released in step i - 1 and its full barrier is waited with parity
// ((i+1) / 2) & 1, as v2 does. dS^T buffer i % 2 is rewritten in step i + 2
// only after both warpgroups passed kBarDsReady of step i + 1, which each
// reaches after retiring dQ_i (as in v2).
#pragma once

#include <cstdint>

#include "cuda_fa3/details/backward2_epilogue.cuh"
#include "cuda_fa3/details/backward2_mainloop.cuh"
#include "cuda_fa3/details/backward2_producer.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/wgmma_ops.cuh"

namespace dilated::cuda_fa3::details {

// One 64 x 64 transposed product acc = rows(A) . rows(B)^T over HeadDim
// (S^T = K_w Q^T or dP^T = V_w dO^T), K-major, committed as its own group.
template <class T, class Shape>
__device__ __forceinline__ void bwd2p_issue_t(float (&acc)[32], const char* a_rows, const char* b_rows) {
  constexpr int kD = Shape::kHeadDim;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const int panel = kk / 4, st = (kk % 4) * 2;  // +32 bytes per k-step inside a panel
    Wgmma<T, 64>::ss(acc, desc_k_major_sw128(a_rows + panel * Shape::kPanelBytesKV) + st,
                     desc_k_major_sw128(b_rows + panel * Shape::kPanelBytesQ) + st, kk > 0);
  }
  wgmma_commit();
}

template <class Shape>
struct Bwd2pConfig {
  // Also pipeline dP^T where its 32 extra accumulators fit (see above).
  static constexpr bool kPipeDp = Shape::kHeadDim == 64;
};

// The two halves of the softmax backward of block `step`, the waits left to
// the caller: P^T = exp2(S^T scale - LSE) in place of S^T (needs S^T
// retired), then dS^T = P^T (c dP^T - delta) in place of dP^T and both
// packed to 16 bits in ap, ads (needs dP^T retired).
template <class Shape>
__device__ __forceinline__ void bwd2p_probs(const BackwardParams& p, const Bwd2Tile& t, const char* smem,
                                            const int step, int lane, std::int64_t key0,
                                            const std::int64_t (&keys)[2], bool keys_full, float (&s)[32]) {
  const int stage = step % Shape::kStages;
  const float* lse_s = reinterpret_cast<const float*>(smem + Shape::kOffsetLse) + stage * Shape::kBlockM;
  const std::int64_t q_begin = std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
  // Keys past the segment, or after a query (causal), need a mask; query
  // rows to skip already have LSE = +inf.
  const bool need_mask = !keys_full || (p.causal && key0 + 63 > q_begin);
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
}

template <class T, class Shape>
__device__ __forceinline__ void bwd2p_dscores(const BackwardParams& p, const char* smem, const int step, int lane,
                                              const float (&s)[32], float (&dp)[32], std::uint32_t (&ap)[4][4],
                                              std::uint32_t (&ads)[4][4]) {
  const int stage = step % Shape::kStages;
  const float* dlt_s = reinterpret_cast<const float*>(smem + Shape::kOffsetDelta) + stage * Shape::kBlockM;
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
}

// Block `step`: with S^T and dP^T pending as the last two wgmma groups,
// both halves above. On return nothing is pending, so no wgmma is in
// flight across a loop edge or a branch join (ptxas serializes every wgmma
// otherwise, C7514/C7515), and only the packed operands (32 registers, not
// the 64 fp32 of s, dp) cross the loop edge (carrying s, dp spilled).
template <class T, class Shape>
__device__ __forceinline__ void bwd2p_prepare(const BackwardParams& p, const Bwd2Tile& t, const char* smem,
                                              const int step, int lane, std::int64_t key0,
                                              const std::int64_t (&keys)[2], bool keys_full, float (&s)[32],
                                              float (&dp)[32], std::uint32_t (&ap)[4][4],
                                              std::uint32_t (&ads)[4][4]) {
  wgmma_wait<1>();  // S^T has landed; dP^T may still run
  fence_registers(s);
  bwd2p_probs<Shape>(p, t, smem, step, lane, key0, keys, keys_full, s);
  wgmma_wait<0>();
  fence_registers(dp);
  bwd2p_dscores<T, Shape>(p, smem, step, lane, s, dp, ap, ads);
}

// The dQ of block `step` out of the registers: staged for the writer warp
// (Shape::kDqStages == 2) or staged and reduced by this warpgroup (1).
template <class Shape>
__device__ __forceinline__ void bwd2_dq_out(const Backward2Args& args, const Bwd2Tile& t, char* smem,
                                            const float (&dq)[Shape::kDqCols / 2], int step, int wg, int thread) {
  if constexpr (Shape::kDqStages == 2) {
    bwd2_stage_dq<Shape>(smem, dq, args.p.scale, step, wg, thread);
  } else {
    const std::int64_t q_begin = std::int64_t(t.q_block_begin + step) * Shape::kBlockM;
    bwd2_store_dq<Shape>(args, t, smem + Shape::kOffsetDQ + wg * Shape::kDqBytesPerWg, dq, q_begin, wg, thread);
  }
}

template <class T, class Shape>
__device__ void bwd2_consume_pipelined(const Backward2Args& args, const Bwd2Tile& t, char* smem,
                                       Bwd2Barriers bar, int wg, int thread) {
  constexpr int kD = Shape::kHeadDim;
  constexpr bool kPipeDp = Bwd2pConfig<Shape>::kPipeDp;
  static_assert(Shape::kStages == 2, "v2p issues block i + 1 from the other stage while stage i is in use");
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

  auto prepare = [&](const int step) {
    bwd2p_prepare<T, Shape>(p, t, smem, step, lane, key0, keys, keys_full, s, dp, ap, ads);
  };

  mbar_wait(bar.kv_full, 0);
  mbar_wait(&bar.qdo_full[0], 0);
  bwd2p_issue_t<T, Shape>(s, k_rows, q_stage(0));
  bwd2p_issue_t<T, Shape>(dp, v_rows, do_stage(0));
  prepare(0);

  // Step i begins with P^T_i (c-scaled) in ap and dS^T_i in ads, every wgmma
  // retired.
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % Shape::kStages;
    const char* q_smem = q_stage(stage);
    const char* do_smem = do_stage(stage);
    // dS^T buffer `stage`: rewritten in step i + 2 only after both warpgroups
    // passed kBarDsReady of step i + 1, i.e. after both retired dQ_i.
    char* ds_smem = smem + Shape::kOffsetDS + stage * Shape::kDsBytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kD>::rs_tb(dv, ap[kk], desc_mn_major_sw128(do_smem + kk * 16 * 128, Shape::kPanelBytesQ), 1);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kD>::rs_tb(dk, ads[kk], desc_mn_major_sw128(q_smem + kk * 16 * 128, Shape::kPanelBytesQ), 1);
    wgmma_commit();

#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int key = 64 * wg + row_in_wg[rr], q = 8 * j + 2 * (lane % 4);
        const int byte = key * 128 + ((((q * 2) >> 4) ^ (key & 7)) << 4) + ((q * 2) & 15);
        *reinterpret_cast<std::uint32_t*>(ds_smem + byte) = ads[j / 2][(j % 2) * 2 + rr];
      }
    fence_proxy_async();
    if constexpr (Shape::kDqSplitKeys)
      named_sync(Shape::kBarDsOwn + wg, 128);
    else
      named_sync(Shape::kBarDsReady, 256);

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

    // Pending: dV/dK, dQ. Retire dV/dK: P^T, dS^T registers die, and every
    // read of this stage's Q, dO, LSE and delta by this thread is done.
    wgmma_wait<1>();
    fence_registers(dv);
    fence_registers(dk);
    keep_alive(ap);
    keep_alive(ads);
    mbar_arrive(&bar.qdo_empty[stage]);

    if (step + 1 < t.q_blocks) {
      // Block i + 1 (the other stage): S^T (+ dP^T) run while dQ_i is staged.
      const int next = (step + 1) % Shape::kStages;
      mbar_wait(&bar.qdo_full[next], ((step + 1) / Shape::kStages) & 1);
      bwd2p_issue_t<T, Shape>(s, k_rows, q_stage(next));
      if constexpr (kPipeDp) {
        bwd2p_issue_t<T, Shape>(dp, v_rows, do_stage(next));
        wgmma_wait<2>();  // dQ_i retired; S^T, dP^T of block i + 1 keep running
      } else {
        wgmma_wait<1>();  // dQ_i retired; S^T of block i + 1 keeps running
      }
      fence_registers(dq);
      bwd2_dq_out<Shape>(args, t, smem, dq, step, wg, thread);
      // dP^T of block i + 1 runs under the softmax's exp2 (its S^T is done).
      if constexpr (!kPipeDp) bwd2p_issue_t<T, Shape>(dp, v_rows, do_stage(next));
      prepare(step + 1);
    } else {
      wgmma_wait<0>();
      fence_registers(dq);
      bwd2_dq_out<Shape>(args, t, smem, dq, step, wg, thread);
    }
  }
  // The last reductions must finish reading shared memory before the CTA
  // exits (with the writer warp, the writer waits for its own).
  if (Shape::kDqStages == 1 && thread == 0) bulk_wait_group<0>();
  bwd2_store_dkv<T, Shape>(args, t, dk, dv, wg, thread);
}

}  // namespace dilated::cuda_fa3::details
