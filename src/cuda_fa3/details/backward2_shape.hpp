// cuda_fa3/details/backward2_shape.hpp - tile sizes, shared-memory layout,
// barrier and named-barrier ids of the FA3-style backward (v2).
//
// FA3's head_dim-128 choice: a CTA owns 128 keys and walks query blocks of 64.
// Warpgroup 0 is the producer (one thread issues TMA for K, V once and a
// 2-stage ring of Q/dO blocks; one warp stages the block's LSE and delta in
// shared memory); warpgroups 1 and 2 are consumers owning 64 keys each, so
// the transposed products S^T = K Q^T, dP^T = V dO^T have M = 64 keys and
// P^T, dS^T stay in registers as the A operands of dV += P^T dO and
// dK += dS^T Q. dQ = dS K needs dS with queries as rows: both warpgroups
// store dS^T to shared memory (double-buffered), and each computes half of
// dQ's columns over all 128 keys.
#pragma once

namespace dilated::cuda_fa3::details {

// DqStages: dQ staging buffers per consumer warpgroup. 2 with the dQ writer
// warp (backward2_epilogue.cuh): a warpgroup stages block i + 1 while the
// writer's reduction of block i still reads the other buffer. (dQ by 16-byte
// atomics from the registers, no staging, ran 16-20% slower on the H100.)
template <int HeadDim, int DqStages = 1>
struct Bwd2Shape {
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockN = 128;  // keys per CTA
  static constexpr int kBlockM = 64;   // queries per step
  static constexpr int kStages = 2;    // Q/dO/LSE/delta ring
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  static constexpr int kPanels = HeadDim / 64;       // 64-column (128-byte) panels
  static constexpr int kPanelBytesKV = kBlockN * 128;
  static constexpr int kPanelBytesQ = kBlockM * 128;
  static constexpr int kTileBytesKV = kPanels * kPanelBytesKV;
  static constexpr int kTileBytesQ = kPanels * kPanelBytesQ;
  // dS^T: 128 key rows x 64 queries (128 bytes), one 128-byte-swizzled panel.
  static constexpr int kDsBytes = kBlockN * 128;
  // dQ, head_dim 128: each consumer warpgroup owns HeadDim/2 columns of the
  // 64-row block, reduced over all 128 keys (both warpgroups' dS^T).
  // head_dim 64: half the columns (32) would need a B operand starting
  // mid-way through a 128-byte swizzle row; instead each warpgroup computes
  // all 64 columns over its own 64 keys, and both reduce-add into the same
  // rows (twice the reduction traffic, no cross-warpgroup barrier).
  // Staged as fp32 boxes of 32 columns (128 bytes, 128-byte swizzle).
  static constexpr bool kDqSplitKeys = HeadDim == 64;
  static constexpr int kDqCols = kDqSplitKeys ? HeadDim : HeadDim / 2;
  static constexpr int kDqKeys = kDqSplitKeys ? 64 : kBlockN;  // reduction length of one dQ product
  static constexpr int kDqBoxes = kDqCols / 32;
  static constexpr int kDqBoxBytes = kBlockM * 128;
  static constexpr int kDqBytesPerWg = kDqBoxes * kDqBoxBytes;  // one staging buffer
  static constexpr int kDqStages = DqStages;
  // Layout, every operand 1024-byte aligned (128-byte swizzle atoms):
  // [K][V][Q x2][dO x2][dS^T x2][dQ wg0 x DqStages][dQ wg1 x DqStages][LSE x2][delta x2][barriers]
  static constexpr int kOffsetK = 0;
  static constexpr int kOffsetV = kOffsetK + kTileBytesKV;
  static constexpr int kOffsetQ = kOffsetV + kTileBytesKV;
  static constexpr int kOffsetDO = kOffsetQ + kStages * kTileBytesQ;
  static constexpr int kOffsetDS = kOffsetDO + kStages * kTileBytesQ;
  static constexpr int kOffsetDQ = kOffsetDS + kStages * kDsBytes;
  static constexpr int kOffsetLse = kOffsetDQ + kConsumerWarpgroups * kDqStages * kDqBytesPerWg;
  static constexpr int kOffsetDelta = kOffsetLse + kStages * kBlockM * 4;
  static constexpr int kOffsetBarriers = kOffsetDelta + kStages * kBlockM * 4;
  // kv_full, qdo_full[kStages], qdo_empty[kStages]
  static constexpr int kBarriers = 1 + 2 * kStages;
  // +1024: the dynamic shared-memory base is only 16-byte aligned.
  static constexpr int kSmemBytes = kOffsetBarriers + 8 * kBarriers + 1024;

  // Arrivals that complete one use of a Q/dO stage: the TMA thread's
  // arrive.expect_tx plus one per query of the block (the LSE/delta warps).
  static constexpr int kStatsWarps = kBlockM / 32;
  static constexpr int kFullArrivals = 1 + kBlockM;
  static constexpr int kEmptyArrivals = 128 * kConsumerWarpgroups;

  // Named barriers (0 is __syncthreads): dS^T of both consumer warpgroups in
  // shared memory; each warpgroup's dQ staging buffer written / free.
  static constexpr int kBarDsReady = 1;  // 256 threads (head_dim 128)
  static constexpr int kBarDq = 2;       // + consumer warpgroup (0, 1): 128 threads
  static constexpr int kBarDsOwn = 4;    // + consumer warpgroup: own dS^T rows (head_dim 64)
  // With the dQ writer warp (DqStages == 2), 160 threads each (one consumer
  // warpgroup + the writer warp); + 2 * consumer warpgroup + buffer:
  static constexpr int kBarDqFull = 6;    // staged, the writer may reduce it (6..9)
  static constexpr int kBarDqEmpty = 10;  // reduction read it, may be rewritten (10..13)
  static constexpr int kDqWriterWarp = 3;  // of the producer warpgroup (warps 1-2 stage LSE/delta)

  static_assert(HeadDim == 64 || HeadDim == 128, "v2 backward tiles exist for head_dim 64 and 128 (256 runs v1)");
  static_assert(kOffsetDQ % 1024 == 0 && kOffsetDS % 1024 == 0, "swizzled buffers must be 1024-aligned");
  static_assert(DqStages == 1 || DqStages == 2, "one staging buffer, or two with the dQ writer");
  static_assert(kDqWriterWarp > kStatsWarps, "the dQ writer warp must not be a stats warp");
  static_assert(kSmemBytes <= 227 * 1024, "tile does not fit the H100's shared memory");
};

}  // namespace dilated::cuda_fa3::details
