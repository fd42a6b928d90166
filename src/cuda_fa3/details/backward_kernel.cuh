// cuda_fa3/details/backward_kernel.cuh - the H100 backward for one branch.
//
// One warpgroup owns a block of 64 keys (of one batch, head, segment) and
// walks the query blocks that see it, with Q and dO double-buffered by TMA:
//   S^T  = K Q^T                 (wgmma, K and Q from shared memory)
//   P^T  = exp(S^T * scale - LSE) with the merged LSE of all branches
//   dV  += P^T (c dO)            (P^T from registers)
//   dP^T = V dO^T
//   dS^T = P^T * (c dP^T - delta)
//   dK  += dS^T Q                (dS^T from registers)
//   dQ   = dS K                  (dS^T stored to shared memory, read transposed)
// dK and dV stay in registers until the end; dQ goes to an fp32 accumulator
// with vector atomics (several key blocks add to one query row). Because the
// LSE and delta are those of the merged forward, the per-branch gradients sum
// to the exact gradient of LongNet's merged output (one softmax over the
// multiset union of the branches' keys).
#pragma once

#include <cuda.h>

#include <cmath>
#include <cstdint>

#include "cuda_fa3/details/backward_params.hpp"
#include "cuda_fa3/details/block_walk.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/wgmma_ops.cuh"

namespace dilated::cuda_fa3::details {

template <int HeadDim>
struct BackwardShape {
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockN = 64;  // keys per CTA (the wgmma M of one warpgroup)
  static constexpr int kBlockM = 64;  // queries per step
  static constexpr int kThreads = 128;
  static constexpr int kPanels = HeadDim / 64;
  static constexpr int kPanelBytes = 64 * 128;  // 64 rows x 64 columns of 16-bit
  static constexpr int kTileBytes = kPanels * kPanelBytes;
  static constexpr int kOffsetK = 0;
  static constexpr int kOffsetV = kTileBytes;
  static constexpr int kOffsetQ = 2 * kTileBytes;        // 2 stages
  static constexpr int kOffsetDO = 4 * kTileBytes;       // 2 stages
  static constexpr int kOffsetDS = 6 * kTileBytes;       // dS^T: 64 keys x 64 queries
  static constexpr int kOffsetBarriers = kOffsetDS + kPanelBytes;
  static constexpr int kSmemBytes = kOffsetBarriers + 8 * 3 + 1024;
  // Gradient columns one CTA owns: head_dim 256 splits dK, dV, dQ into two
  // column halves (grid y), each CTA recomputing S and dP over the full
  // head_dim, so the accumulators fit the registers of one warpgroup.
  static constexpr int kOutCols = HeadDim < 128 ? HeadDim : 128;
  static_assert(HeadDim == 64 || HeadDim == 128 || HeadDim == 256,
                "backward tiles exist for head_dim 64, 128 and 256");
};

struct KeyTile {
  int b, h;
  std::int64_t segment, k_begin, kept, first;
  int phase;
  std::int64_t map_row0;
  int q_block_begin, q_blocks;
  // Windowed calls (v1 only; v2 reads the whole-sequence fields above, to
  // which these reduce there): sparse query rows [q_base, q_end) of the
  // query window, in blocks from q_base; keys end at k_end; Q/dO and K/V
  // have their own descriptors (block_walk.cuh, window_map_row).
  std::int64_t q_base, q_end, k_end;
  int q_phase, k_phase;
  std::int64_t q_map_row0, k_map_row0;
  bool active;
  Spans spans;  // block-sparse: the query runs that visit this key tile (pattern.hpp)
};

// kBlockSparse (compile time, so other kernels reusing this keep their code):
// the query blocks come from the block-sparse rule. kWindows: the kernel
// takes windowed launches (v1; v2 decodes the whole sequence only).
template <class Shape, bool kBlockSparse = false, bool kWindows = false>
__device__ __forceinline__ KeyTile decode_key_tile(const BackwardParams& p, std::int64_t idx) {
  KeyTile t{};
  const std::int64_t kt = idx % p.tiles_per_segment;
  const std::int64_t g = idx / p.tiles_per_segment;
  t.segment = g % p.num_segments;
  if constexpr (kWindows) t.segment += p.first_segment;
  t.h = int((g / p.num_segments) % p.heads);
  t.b = int(g / (p.num_segments * p.heads));
  const int i = p.branch;
  const std::int64_t o = p.pattern.offset(t.h, i);
  t.kept = p.pattern.kept_count(i, t.segment, o);
  const std::int64_t r = p.pattern.dilation[i];
  if (!(kWindows && p.windowed)) {
    // The whole sequence (v2's only case; v1's plain backward): exactly the
    // arithmetic before windows existed (anything more made ptxas spill in v2).
    t.k_begin = kt * Shape::kBlockN;
    t.active = p.pattern.active(t.h, i) && t.k_begin < t.kept;
    if (!t.active) return t;
    t.first = p.pattern.position(i, t.segment, o, 0);
    t.phase = int(t.first % r);
    t.map_row0 = t.first / r;
    const std::int64_t q0 = query_range_begin(p.causal, 0, t.k_begin);
    t.q_block_begin = int(q0 / Shape::kBlockM);
    t.q_blocks = int((t.kept + Shape::kBlockM - 1) / Shape::kBlockM) - t.q_block_begin;
    if constexpr (kWindows) {  // v1 reads the windowed fields
      t.q_base = 0;
      t.q_end = t.k_end = t.kept;
      t.q_phase = t.k_phase = t.phase;
      t.q_map_row0 = t.k_map_row0 = t.map_row0;
    }
  } else {
    // Sparse rows inside the windows, by block_walk.cuh's 32-bit helpers.
    std::int64_t k0 = 0;
    window_rows(p.pattern, i, t.segment, o, p.q_window_begin, p.q_window_len, &t.q_base, &t.q_end);
    window_rows(p.pattern, i, t.segment, o, p.k_window_begin, p.k_window_len, &k0, &t.k_end);
    t.k_begin = k0 + kt * Shape::kBlockN;
    t.active = p.pattern.active(t.h, i) && t.k_begin < t.k_end && t.q_base < t.q_end;
    if (!t.active) return t;
    t.first = p.pattern.position(i, t.segment, o, 0);
    window_map_row(t.first, p.q_window_begin, r, &t.q_phase, &t.q_map_row0);
    window_map_row(t.first, p.k_window_begin, r, &t.k_phase, &t.k_map_row0);
    const std::int64_t q0 = query_range_begin(p.causal, t.q_base, t.k_begin);
    if (q0 >= t.q_end) {  // causal: every query of the window comes before the keys
      t.active = false;
      return t;
    }
    t.q_block_begin = int((q0 - t.q_base) / Shape::kBlockM);
    t.q_blocks = int((t.q_end - t.q_base + Shape::kBlockM - 1) / Shape::kBlockM) - t.q_block_begin;
  }
  if constexpr (kBlockSparse) {
    // One branch over the whole sequence; the 64-key tile lies in one key
    // block (block_k % 128 == 0, plan.cu), so it has one list of query runs.
    // (No windowed calls: plan.cu refuses them, so q_base = 0.)
    t.spans = query_spans(p.pattern, p.causal, t.h, 0, t.kept, t.k_begin);
    t.q_block_begin = 0;
    t.q_blocks = count_blocks<Shape::kBlockM>(t.spans);
  }
  return t;
}

template <class Shape>
__device__ __forceinline__ void load_rows(const CUtensorMap* map, char* dst, std::uint64_t* bar,
                                          std::int64_t row, int h, int b) {
#pragma unroll
  for (int panel = 0; panel < Shape::kPanels; ++panel)
    tma_load_4d(dst + panel * Shape::kPanelBytes, map, bar, 64 * panel, int(row), h, b);
}

// kBlockSparse: a separate instantiation, so dense/dilated launches keep
// their block arithmetic (and registers).
template <class T, int HeadDim, bool kDropout, bool kBlockSparse>
__global__ void __launch_bounds__(128, 1) backward_kernel(const __grid_constant__ BackwardArgs args) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Shape = BackwardShape<HeadDim>;
  constexpr int kD = HeadDim;          // reduction width of S and dP
  constexpr int kC = Shape::kOutCols;  // gradient columns of this CTA
  const int col0 = blockIdx.y * kC;    // first of them
  const int panel0 = col0 / 64;
  const BackwardParams& p = args.p;
  const KeyTile t = decode_key_tile<Shape, kBlockSparse, true>(p, blockIdx.x);
  if (!t.active || t.q_blocks <= 0) return;

  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) &
                                       ~std::uintptr_t(1023));
  auto* kv_full = reinterpret_cast<std::uint64_t*>(smem + Shape::kOffsetBarriers);
  std::uint64_t* qdo_full = kv_full + 1;  // [2]
  const int thread = threadIdx.x, warp = thread / 32, lane = thread % 32;
  const CUtensorMap* qmap = &args.q[t.q_phase];
  const CUtensorMap* dmap = &args.dout[t.q_phase];

  // Query blocks of the key tile (block_walk.cuh): thread 0 walks them one
  // step ahead for the loads, every thread walks them for the step's rows.
  BlockWalk<Shape::kBlockM, kBlockSparse> issue_walk(t.spans), step_walk(t.spans);
  auto issue_q_block = [&](int step) {  // thread 0 only
    const int stage = step % 2;
    const std::int64_t row = t.q_map_row0 + t.q_base + issue_walk.next(t.q_block_begin + step);
    mbar_arrive_expect_tx(&qdo_full[stage], 2 * Shape::kTileBytes);
    load_rows<Shape>(qmap, smem + Shape::kOffsetQ + stage * Shape::kTileBytes, &qdo_full[stage], row, t.h, t.b);
    load_rows<Shape>(dmap, smem + Shape::kOffsetDO + stage * Shape::kTileBytes, &qdo_full[stage], row, t.h, t.b);
  };
  if (thread == 0) {
    mbar_init(kv_full, 1);
    mbar_init(&qdo_full[0], 1);
    mbar_init(&qdo_full[1], 1);
    fence_barrier_init();
    mbar_arrive_expect_tx(kv_full, 2 * Shape::kTileBytes);
    load_rows<Shape>(&args.k[t.k_phase], smem + Shape::kOffsetK, kv_full, t.k_map_row0 + t.k_begin, t.h, t.b);
    load_rows<Shape>(&args.v[t.k_phase], smem + Shape::kOffsetV, kv_full, t.k_map_row0 + t.k_begin, t.h, t.b);
    issue_q_block(0);
  }
  __syncthreads();

  // Accumulator rows of this thread (keys for S^T, dP^T, dK, dV; queries for dQ).
  const int row_in_block[2] = {16 * warp + lane / 4, 16 * warp + lane / 4 + 8};
  const std::int64_t keys[2] = {t.k_begin + row_in_block[0], t.k_begin + row_in_block[1]};
  float dk[kC / 2], dv[kC / 2];
#pragma unroll
  for (int i = 0; i < kC / 2; ++i) dk[i] = dv[i] = 0.f;
  float s[32], dp[32];
  std::uint32_t a[4][4];
  const float kLog2e = 1.4426950408889634f;
  const std::int64_t lse_base = t.b * p.lse_stride_b + t.h * p.lse_stride_h;
  const std::int64_t delta_base = t.b * p.delta_stride_b + t.h * p.delta_stride_h;
  const std::int64_t r = p.pattern.dilation[p.branch];
  char* ds_smem = smem + Shape::kOffsetDS;

  mbar_wait(kv_full, 0);
  for (int step = 0; step < t.q_blocks; ++step) {
    const int stage = step % 2;
    const char* q_smem = smem + Shape::kOffsetQ + stage * Shape::kTileBytes;
    const char* do_smem = smem + Shape::kOffsetDO + stage * Shape::kTileBytes;
    mbar_wait(&qdo_full[stage], (step / 2) & 1);
    if (thread == 0 && step + 1 < t.q_blocks) issue_q_block(step + 1);  // other stage is free
    const std::int64_t q_begin = t.q_base + step_walk.next(t.q_block_begin + step);

    // S^T = K Q^T and dP^T = V dO^T, both K-major products over head_dim.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int panel = kk / 4, st = (kk % 4) * 2;
      Wgmma<T, 64>::ss(s, desc_k_major_sw128(smem + Shape::kOffsetK + panel * Shape::kPanelBytes) + st,
                       desc_k_major_sw128(q_smem + panel * Shape::kPanelBytes) + st, kk > 0);
    }
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int panel = kk / 4, st = (kk % 4) * 2;
      Wgmma<T, 64>::ss(dp, desc_k_major_sw128(smem + Shape::kOffsetV + panel * Shape::kPanelBytes) + st,
                       desc_k_major_sw128(do_smem + panel * Shape::kPanelBytes) + st, kk > 0);
    }
    wgmma_commit();
    // Per-column (query) LSE and delta while the products run.
    float lse2[16], dlt[16];
    bool qvalid[16];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const std::int64_t q = q_begin + 8 * j + 2 * (lane % 4) + c;
        const bool ok = q < t.q_end;
        // Row of the query window (q_base: a row that exists, for the rows past the end).
        const std::int64_t pos = t.first + (ok ? q : t.q_base) * r - p.q_window_begin;
        const float l = __ldg(p.lse + lse_base + pos * p.lse_stride_s);
        qvalid[2 * j + c] = ok && l != -INFINITY;
        lse2[2 * j + c] = l * kLog2e;
        dlt[2 * j + c] = __ldg(p.delta + delta_base + pos * p.delta_stride_s);
      }
    }
    wgmma_wait<0>();
    fence_registers(s);
    fence_registers(dp);

    // P^T and dS^T in registers; P^T packed as the A operand of dV += P^T dO.
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = 2 * j + c, idx = 4 * j + 2 * rr + c;
          const std::int64_t q = q_begin + 8 * j + 2 * (lane % 4) + c;
          const bool visible = qvalid[col] && keys[rr] < t.k_end && (!p.causal || keys[rr] <= q);
          const float pr = visible ? fast_exp2(fmaf(s[idx], p.scale_log2, -lse2[col])) : 0.f;
          // Dropout (the forward's mask): dV sees P*M/(1-p); dP = dP~ * M/(1-p).
          float keep = 1.f;
          if constexpr (kDropout)
            keep = p.dropout.keeps(t.b, t.h, t.first + q * r, t.first + keys[rr] * r, p.branch)
                       ? p.keep_scale
                       : 0.f;
          s[idx] = pr * keep;
          dp[idx] = pr * (p.output_scale * keep * dp[idx] - dlt[col]);
        }
      }
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const auto packed = Pack2<T>::make(p.output_scale * s[8 * kk + 2 * x], p.output_scale * s[8 * kk + 2 * x + 1]);
        a[kk][x] = *reinterpret_cast<const std::uint32_t*>(&packed);
      }
    // dV += P^T (c dO): the factor c is folded into P^T above.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kC>::rs_tb(dv, a[kk],
                          desc_mn_major_sw128(do_smem + panel0 * Shape::kPanelBytes + kk * 16 * 128,
                                              Shape::kPanelBytes),
                          1);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dv);
    keep_alive(a);

    // dS^T: registers for dK, and shared memory (128-byte swizzled, keys as
    // rows) for dQ = dS K, which reads it transposed.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const auto packed = Pack2<T>::make(dp[8 * kk + 2 * x], dp[8 * kk + 2 * x + 1]);
        a[kk][x] = *reinterpret_cast<const std::uint32_t*>(&packed);
      }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int key = row_in_block[rr], q = 8 * j + 2 * (lane % 4);
        const int byte = key * 128 + ((((q * 2) >> 4) ^ (key & 7)) << 4) + (q * 2 & 15);
        const std::uint32_t packed = a[j / 2][(j % 2) * 2 + rr];
        *reinterpret_cast<std::uint32_t*>(ds_smem + byte) = packed;
      }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();

    float dq[kC / 2];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kC>::rs_tb(dk, a[kk],
                          desc_mn_major_sw128(q_smem + panel0 * Shape::kPanelBytes + kk * 16 * 128,
                                              Shape::kPanelBytes),
                          1);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      Wgmma<T, kC>::ss_tt(dq, desc_mn_major_sw128(ds_smem + kk * 16 * 128, Shape::kPanelBytes),
                          desc_mn_major_sw128(smem + Shape::kOffsetK + panel0 * Shape::kPanelBytes +
                                                  kk * 16 * 128,
                                              Shape::kPanelBytes),
                          kk > 0);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dk);
    fence_registers(dq);
    keep_alive(a);

    // dQ rows are queries here: add scale * dQ into the fp32 accumulator.
    // Neighbouring lanes (lane ^ 1) hold the two halves of 4 consecutive
    // columns of both rows; swapping one pair lets each lane issue one 16-byte
    // vector atomic (even lanes row 0, odd lanes row 1): half the atomics.
    {
      const bool odd = lane & 1;
      const int rr = odd ? 1 : 0;
      const std::int64_t q = q_begin + row_in_block[rr];
      const bool ok = q < t.q_end;
      const std::int64_t pos = t.first + (ok ? q : t.q_base) * r - p.q_window_begin;
      float* row = p.dq + ((std::int64_t(t.b) * p.q_window_len + pos) * p.heads + t.h) * kD + col0;
#pragma unroll
      for (int j = 0; j < kC / 8; ++j) {
        const float r0x = p.scale * dq[4 * j], r0y = p.scale * dq[4 * j + 1];
        const float r1x = p.scale * dq[4 * j + 2], r1y = p.scale * dq[4 * j + 3];
        const float sx = __shfl_xor_sync(0xffffffffu, odd ? r0x : r1x, 1);
        const float sy = __shfl_xor_sync(0xffffffffu, odd ? r0y : r1y, 1);
        const float4 val = odd ? make_float4(sx, sy, r1x, r1y) : make_float4(r0x, r0y, sx, sy);
        if (ok) atomicAdd(reinterpret_cast<float4*>(row + 8 * j + 2 * ((lane % 4) & ~1)), val);
      }
    }
    __syncthreads();  // this stage and dS^T are free for the next step
  }

  // dK, dV of this key block: one CTA per key row and branch, so a plain
  // read-add-write accumulates over the branches (they run one after another).
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    if (keys[rr] >= t.k_end) continue;
    const std::int64_t pos = t.first + keys[rr] * r - p.k_window_begin;
    const std::int64_t off = ((std::int64_t(t.b) * p.k_window_len + pos) * p.heads + t.h) * kD + col0;
#pragma unroll
    for (int j = 0; j < kC / 8; ++j) {
      float2* gk = reinterpret_cast<float2*>(p.dk + off + 8 * j + 2 * (lane % 4));
      float2* gv = reinterpret_cast<float2*>(p.dv + off + 8 * j + 2 * (lane % 4));
      float2 x = *gk, y = *gv;
      x.x += p.scale * dk[4 * j + 2 * rr];
      x.y += p.scale * dk[4 * j + 2 * rr + 1];
      y.x += dv[4 * j + 2 * rr];
      y.y += dv[4 * j + 2 * rr + 1];
      *gk = x;
      *gv = y;
    }
  }
#endif
}

}  // namespace dilated::cuda_fa3::details
