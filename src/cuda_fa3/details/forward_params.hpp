// cuda_fa3/details/forward_params.hpp - everything one forward launch (one
// branch) needs, passed by value as a __grid_constant__ kernel parameter
// together with the TMA descriptors of Q, K and V.
#pragma once

#include <cuda.h>
#include <cstdint>

#include "cuda_fa3/details/fast_decode.hpp"
#include "cuda_fa3/details/longnet_dedup.hpp"
#include "cuda_fa3/details/longnet_fused_chain.hpp"
#include "cuda_fa3/details/tile_schedule.hpp"
#include "dilated/dropout_rng.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

// A dilated branch reads rows p = phase + r*i of Q/K/V. Which residue
// `phase` a (segment, head) starts on varies when r does not divide w, so each
// tensor gets one TMA descriptor per residue: a view with base row `phase`
// and row stride r, whose bounds are exact (no reads past the sequence).
inline constexpr int kMaxPhases = 16;

struct ForwardParams {
  PatternParams pattern;
  int branch = 0;
  int batch = 0;
  int heads = 0;
  std::int64_t seq_len = 0;
  std::int64_t num_segments = 0;   // of this branch that the launch visits
  std::int64_t first_segment = 0;  // the first of them
  // Windows of the sequence the Q/out/lse and K/V tensors hold (windowed
  // calls, sequence parallelism; forward() passes [0, seq_len) for both).
  // Masks and segments follow global positions; rows index the tensors.
  std::int64_t q_window_begin = 0, q_window_len = 0;
  std::int64_t k_window_begin = 0, k_window_len = 0;
  bool windowed = false;  // false: the whole sequence (the windows above are unused)
  std::int64_t tiles_per_segment = 0;  // query tiles of kBlockM sparse rows
  std::int64_t total_tiles = 0;        // batch * heads * segments * tiles_per_segment
  float scale_log2 = 0.f;          // softmax scale * log2(e): scores go through exp2
  float output_scale = 1.f;        // HeadGroups averages branch outputs
  DropoutParams dropout;           // counter-based mask (dilated/dropout_rng.hpp)
  float keep_scale = 1.f;          // 1 / (1 - p)
  bool causal = false;
  bool merge = false;              // combine with the out/lse already written
  // Block-sparse: key blocks of each (layout, 128-row query tile), counted by
  // the plan for this head_dim's key block (block_sparse_device.hpp); null: count in the kernel.
  const std::int32_t* tile_blocks = nullptr;
  // Output [b, s, h, d] (last dim contiguous) and LSE [b, h, s], strides in elements.
  void* out = nullptr;
  std::int64_t out_stride_b = 0, out_stride_s = 0, out_stride_h = 0;
  float* lse = nullptr;
  std::int64_t lse_stride_b = 0, lse_stride_h = 0, lse_stride_s = 0;
  // (Last, so the fields above keep the offsets the dense kernels were tuned with.)
  // Block-sparse: which tiles each CTA runs, in order (tile_schedule.hpp:
  // CTA c runs tile_list[tile_offsets[c]] ..., on a grid of order_ctas);
  // null: the stride order.
  const std::int32_t* tile_offsets = nullptr;
  const TileEntry* tile_list = nullptr;
  int order_ctas = 0;
  // Query tile buffers in shared memory: 2 (block-sparse plans) loads the
  // next tile's Q during this one where a second buffer fits (head_dim <= 128;
  // forward_kernel.cuh QBuffers), else 1.
  int q_buffers = 1;
  // Rows written outright (no merge) go out in 16-byte stores (epilogue.cuh
  // store_rows_wide): block-sparse plans set it; forward_launch.cu sets it
  // for the other launches.
  bool wide_stores = false;
  // A merging launch copies each tile's old O rows and LSE to shared memory
  // while the tile runs (merge_stage.cuh, where it fits) instead of loading
  // them in the epilogue (forward_launch.cu sets it).
  bool merge_prefetch = false;
  // Causal (no dropout, not block-sparse): the persistent grid's tile counter
  // (forward_kernel.cuh produce_dynamic_tiles), zero at launch; null: one tile per CTA.
  std::int32_t* tile_counter = nullptr;
  // Its order (causal_order.hpp causal_ticket_tile): tickets go heaviest
  // first within sections of causal_section of the launch's causal_groups
  // (batch, head, segment) groups; causal_section_tiles = causal_section *
  // tiles_per_segment. Set by forward_launch.cu.
  std::int32_t causal_groups = 0, causal_section = 0, causal_section_tiles = 0;
  // Block-sparse schedule: a tile starts from its entry's host-decoded b, h,
  // q_begin (tile_scheduler.cuh decode_entry_tile) instead of decode_tile's
  // divisions; plan.cu sets it, DILATED_FA3_BS=old clears it (forward_launch.cu).
  // (In the struct's tail padding: the other kernels' parameters keep their size.)
  bool entry_decode = false;
  // The lazy softmax after each tile's first key block (softmax.cuh
  // lazy_probabilities); forward_launch.cu sets it, DILATED_FA3_SOFTMAX=exact clears it.
  bool lazy_softmax = false;
  // LongNet chains (longnet_dedup.hpp, plan.cu): this branch's skipped key
  // run per query tile and the weights of its keys; inactive: today's
  // kernel. Only forward_kernel<..., kDedup = true> reads it.
  DedupParams dedup;
  // decode_tile's divisors as multiply-shift pairs (fast_decode.hpp) where
  // they fit 31 bits; plan.cu sets them (whole-sequence LongNet-mode launches,
  // not block-sparse), DILATED_FA3_DECODE=old leaves them off.
  TileDivisors decode;
  // A LongNet chain in one launch (longnet_fused_chain.hpp; plan.cu sets it,
  // DILATED_FA3_LONGNET=chain runs the chain one launch per member). Only
  // forward_kernel<..., kFused = true> reads it; branch is its last member
  // (whose dilation the descriptors take).
  FusedChainParams chain;
};

struct ForwardArgs {
  ForwardParams p;
  CUtensorMap q[kMaxPhases];
  CUtensorMap k[kMaxPhases];
  CUtensorMap v[kMaxPhases];
};

}  // namespace dilated::cuda_fa3::details
