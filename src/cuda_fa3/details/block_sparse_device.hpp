// cuda_fa3/details/block_sparse_device.hpp - what the H100 forward supports of
// a block-sparse pattern, and the device copy of its run layout that the
// kernels' BlockSparseRule (dilated/pattern.hpp) reads. Included by plan.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cuda_fa3/details/tile_schedule.hpp"
#include "dilated/block_sparse.hpp"
#include "dilated/config.hpp"
#include "dilated/error.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

// Query tiles are 128 rows and key blocks 128 (head_dim 64/128) or 64 (256)
// keys, so 128-multiples make every tile lie in one query block and every
// key block in one key block. Returns "" when the forward can run it.
inline std::string block_sparse_unsupported(const AttentionConfig& c) {
  const BlockSparsePattern& b = *c.block_sparse;
  if (b.block_q % 128 != 0 || b.block_k % 128 != 0)
    return "block-sparse block_q = " + std::to_string(b.block_q) + ", block_k = " +
           std::to_string(b.block_k) + " are not multiples of 128 (the kernel's query tile and "
           "key block)";
  if (c.dropout_p > 0.0) return "block-sparse with dropout is not implemented in cuda_fa3";
  return "";
}

// Key blocks of `block` keys that each (layout, 128-row query tile) visits:
// its query block's runs, clipped as the forward's tile decode clips them
// (pattern.hpp key_spans: causal limit, sequence end), with where those runs
// start in the layout. The kernel reads them (the count alone, or a
// TileEntry of the schedule) instead of walking the runs through global
// memory first.
inline std::vector<TileWork> tile_work(const BlockSparseLayout& l, BlockSparseRule host_rule,
                                       std::int64_t seq_len, bool causal, int block) {
  host_rule.row_offsets = l.row_offsets.data();
  host_rule.row_runs = l.row_runs.data();
  PatternParams p;
  p.block_sparse = host_rule;
  const std::int64_t tiles = (seq_len + 127) / 128;
  std::vector<TileWork> work(std::size_t(l.layouts * tiles));
  for (std::int64_t layout = 0; layout < l.layouts; ++layout)
    for (std::int64_t t = 0; t < tiles; ++t) {
      const std::int64_t q0 = 128 * t, qn = seq_len - q0 < 128 ? seq_len - q0 : 128;
      const Spans spans = key_spans(p, causal, layout, 0, seq_len, q0, qn);  // head `layout` has layout `layout`
      std::int64_t n = 0, last = 0;
      for (std::int64_t i = 0; i < spans.count; ++i) {
        std::int64_t b, e;
        spans.get(i, &b, &e);
        if (e > b) {
          n += (e - b + block - 1) / block;
          last = b + (e - b - 1) / block * block;  // KeyWalk's last block of this run
        }
      }
      TileWork& w = work[std::size_t(layout * tiles + t)];
      w.key_blocks = std::int32_t(n);
      w.last_key = std::int32_t(last);  // < seq_len, which the schedule keeps below 2^31
      w.run_begin = std::int32_t((spans.runs - l.row_runs.data()) / 2);  // used if the runs fit int32
      w.run_count = std::int32_t(spans.count);
    }
  return work;
}

// The plan's device copy of a block-sparse pattern: one allocation holding
// the forward's per-tile counts, its tile schedule (tile_schedule.hpp) and
// the run layout the rule points at. Freed when the last plan copy goes.
struct BlockSparseDevice {
  void* base = nullptr;
  const std::int32_t* tile_blocks = nullptr;   // tile_work's counts (ForwardParams::tile_blocks)
  const std::int32_t* tile_offsets = nullptr;  // TileSchedule::offsets; null: no schedule
  const TileEntry* tile_list = nullptr;        // TileSchedule::tiles
  int order_ctas = 0;                          // TileSchedule::ctas
  // empty_tiles(): the rows the fill writes, when listed (sequences < 2^24
  // tiles); otherwise plan.cu fills every row first, as for dilated configs.
  bool empty_listed = false;
  const EmptyTile* empty_tiles = nullptr;
  std::int64_t empty_count = 0;
  BlockSparseDevice() = default;
  BlockSparseDevice(const BlockSparseDevice&) = delete;
  BlockSparseDevice& operator=(const BlockSparseDevice&) = delete;
  ~BlockSparseDevice() {
    if (base) cudaFree(base);
  }
};

// Copies the pattern's run layout to device memory (synchronously) and points
// `rule` at it, with tile_work(..., causal, block)'s counts and the forward's
// tile schedule for `batch` x `heads` on `device`'s SMs.
inline std::shared_ptr<BlockSparseDevice> upload_block_sparse(const BlockSparsePattern& pattern,
                                                              std::int64_t seq_len, bool causal, int block,
                                                              std::int64_t batch, std::int64_t heads, int device,
                                                              BlockSparseRule* rule) {
  const BlockSparseLayout l = build_block_sparse_layout(pattern, seq_len);
  // The rule's sizes (make_pattern set them) with host pointers, for the counts.
  const std::vector<TileWork> work = tile_work(l, *rule, seq_len, causal, block);
  std::vector<std::int32_t> counts(work.size());
  for (std::size_t i = 0; i < work.size(); ++i) counts[i] = work[i].key_blocks;
  int sms = 0;
  if ((device >= 0 || cudaGetDevice(&device) == cudaSuccess) &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    sms = 0;
  // Testing: DILATED_FA3_MAX_CTAS=n schedules on at most n CTAs (forward_launch.cu
  // caps its other persistent grids alike), so small problems run many tiles per CTA.
  if (const char* cap = std::getenv("DILATED_FA3_MAX_CTAS"); cap && std::atoi(cap) > 0 && std::atoi(cap) < sms)
    sms = std::atoi(cap);
  const bool runs_fit = l.row_runs.size() / 2 < (std::size_t(1) << 31);  // TileEntry's int32 run offsets
  // DILATED_FA3_BLOCK_SPARSE_CAUSAL_ORDER=kernel: causal tiles in the kernel's
  // order (heads innermost), for comparison (tile_schedule.hpp).
  const char* order_env = std::getenv("DILATED_FA3_BLOCK_SPARSE_CAUSAL_ORDER");
  const bool head_major = !(order_env && std::string(order_env) == "kernel");
  const TileSchedule order = runs_fit ? tile_schedule(work, l.layouts, batch, heads, (seq_len + 127) / 128, causal,
                                                      sms, head_major)
                                      : TileSchedule{};
  // (128 * tiles < 2^31: EmptyTile::q_begin, like TileEntry's.)
  const std::int64_t q_tiles = (seq_len + 127) / 128;
  const bool empty_listed = 128 * q_tiles < (std::int64_t(1) << 31);
  const std::vector<EmptyTile> empty =
      empty_listed ? empty_tiles(work, l.layouts, batch, heads, q_tiles) : std::vector<EmptyTile>{};
  const std::size_t sizes[8] = {counts.size() * sizeof(std::int32_t),
                                order.offsets.size() * sizeof(std::int32_t),
                                order.tiles.size() * sizeof(TileEntry),
                                l.row_offsets.size() * sizeof(std::int64_t),
                                l.col_offsets.size() * sizeof(std::int64_t),
                                l.row_runs.size() * sizeof(std::int32_t),
                                l.col_runs.size() * sizeof(std::int32_t),
                                empty.size() * sizeof(EmptyTile)};
  const void* src[8] = {counts.data(),        order.offsets.data(), order.tiles.data(), l.row_offsets.data(),
                        l.col_offsets.data(), l.row_runs.data(),    l.col_runs.data(),  empty.data()};
  std::size_t offset[8], total = 0;
  for (int i = 0; i < 8; ++i) {  // one allocation, 16-byte aligned parts
    offset[i] = total;
    total += (sizes[i] + 15) / 16 * 16;
  }
  auto d = std::make_shared<BlockSparseDevice>();
  if (cudaMalloc(&d->base, total > 0 ? total : 16) != cudaSuccess) {
    d->base = nullptr;
    throw Error("cuda.runtime", "cuda_fa3: cannot allocate the block-sparse layout");
  }
  char* bytes = static_cast<char*>(d->base);
  for (int i = 0; i < 8; ++i)
    if (sizes[i] > 0 &&
        cudaMemcpy(bytes + offset[i], src[i], sizes[i], cudaMemcpyHostToDevice) != cudaSuccess)
      throw Error("cuda.runtime", "cuda_fa3: cannot copy the block-sparse layout");
  d->tile_blocks = reinterpret_cast<const std::int32_t*>(bytes + offset[0]);
  if (order.ctas > 0) {
    d->tile_offsets = reinterpret_cast<const std::int32_t*>(bytes + offset[1]);
    d->tile_list = reinterpret_cast<const TileEntry*>(bytes + offset[2]);
    d->order_ctas = order.ctas;
  }
  d->empty_listed = empty_listed;
  d->empty_tiles = reinterpret_cast<const EmptyTile*>(bytes + offset[7]);
  d->empty_count = std::int64_t(empty.size());
  rule->row_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[3]);
  rule->col_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[4]);
  rule->row_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[5]);
  rule->col_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[6]);
  return d;
}

}  // namespace dilated::cuda_fa3::details
