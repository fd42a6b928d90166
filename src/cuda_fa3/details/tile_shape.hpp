// cuda_fa3/details/tile_shape.hpp - tile sizes per head_dim and the shared
// memory layout they imply. One producer warpgroup (TMA) and two consumer
// warpgroups (64 query rows each, so kBlockM = 128).
#pragma once

#include <cstdint>

namespace dilated::cuda_fa3::details {

// Keys per block: the S accumulator is 64 x kBlockN floats per consumer
// warpgroup; head_dim 256 halves it to leave registers for the 64x256 O.
// Long non-causal rows of head_dim 128 use 176 (FA3's choice): fewer, longer
// steps amortise the per-block barriers and softmax bookkeeping.
template <int HeadDim>
inline constexpr int kDefaultBlockN = HeadDim <= 128 ? 128 : 64;

// ConsumerWarpgroups: 64 query rows each (kBlockM = 64 x that). Three (192
// rows, FA3's choice for head_dim 64) cut the K/V traffic, producer work and
// per-block barriers per MMA by a third at 160 registers a consumer thread,
// which only a small head dim affords (H100: d64 422 -> 502 TFLOP/s).
template <int HeadDim, int BlockN = kDefaultBlockN<HeadDim>, int ConsumerWarpgroups = 2>
struct TileShape {
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kConsumerWarpgroups = ConsumerWarpgroups;
  static constexpr int kBlockM = 64 * ConsumerWarpgroups;
  static constexpr int kBlockN = BlockN;
  static constexpr int kStages = 2;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  // setmaxnreg split of the 64K registers: the producer keeps 24, the
  // consumers take the rest (168 x 384 at launch = 24 x 128 + 240 x 256;
  // 128 x 512 >= 24 x 128 + 160 x 384).
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = ConsumerWarpgroups == 2 ? 240 : 160;
  // A panel is 64 columns (128 bytes of 16-bit elements) of every row.
  static constexpr int kPanels = HeadDim / 64;
  static constexpr int kPanelBytesQ = kBlockM * 128;
  static constexpr int kPanelBytesKV = kBlockN * 128;
  static constexpr int kTileBytesQ = kPanels * kPanelBytesQ;
  static constexpr int kTileBytesKV = kPanels * kPanelBytesKV;
  // Layout: [Q][K stage 0..S-1][V stage 0..S-1][barriers], all 1024-aligned.
  static constexpr int kOffsetK = kTileBytesQ;
  static constexpr int kOffsetV = kOffsetK + kStages * kTileBytesKV;
  static constexpr int kOffsetBarriers = kOffsetV + kStages * kTileBytesKV;
  static constexpr int kBarriers = 2 + 4 * kStages;  // q full/empty, k/v full, k/v empty
  // +1024: the dynamic shared-memory base is only 16-byte aligned.
  static constexpr int kSmemBytes = kOffsetBarriers + 8 * kBarriers + 1024;
  static_assert(HeadDim % 64 == 0, "head_dim must be a multiple of 64");
  static_assert(ConsumerWarpgroups == 2 || ConsumerWarpgroups == 3, "two or three consumer warpgroups");
  static_assert(kSmemBytes <= 227 * 1024, "tile does not fit the H100's shared memory");
};

}  // namespace dilated::cuda_fa3::details
