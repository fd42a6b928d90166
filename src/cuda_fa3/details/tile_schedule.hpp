// cuda_fa3/details/tile_schedule.hpp - which query tiles each CTA of the
// persistent block-sparse forward grid runs, in which order; computed once
// by the plan on the host (block_sparse_device.hpp uploads it).
//
// Why: block-sparse tiles differ in cost (a query block lists a random
// number of key blocks) and visit few blocks each (~13 at 90% sparsity and
// N = 16K). With the stride assignment (CTA c runs tiles c, c + grid, ...)
// the busiest of 132 CTAs got 1.17x the mean key blocks for bench_fa3's
// 90% mask at N = 16K (1.04x at 64K; perf_tests/results/
// h100-fa3-2026-11-27-bsched/), and the grid waits for it.
//
// List scheduling: the tiles, in the order below, go one by one to the CTA
// whose modelled work is least so far (cost = key blocks +
// kTileOverheadBlocks), which is what a dynamic tile counter would do with
// these costs, without its atomics or per-launch reset. Within each (batch,
// head) the tiles go in descending cost (largest first keeps the tail
// short: 1.01x the mean in the case above, 1.04x causal), but (batch, head)
// groups stay in order, so the tiles running at one time share one head's
// K/V in L2: a tile's ~13 blocks are reused by the head's other tiles only
// through L2, and an order mixing all 16 heads would re-read them from DRAM
// (a model; the causal numbers below are the measured hint). The
// kernel's causal order (last query tiles first, heads innermost) balances
// better (1.01x) but mixes the heads: causal 90% at 16K took 2.66x dense
// time x density with it, 2.55x head-major (H100, two calls of
// h100-fa3-2026-11-27-bsched; DILATED_FA3_BLOCK_SPARSE_CAUSAL_ORDER=kernel).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <queue>
#include <utility>
#include <vector>

namespace dilated::cuda_fa3::details {

// The fixed cost of a tile (Q load, pipeline fill and drain, epilogue) in
// key blocks: at N = 16K the stride grid's busiest CTA ran 232 key blocks in
// 0.509 ms where the dense forward runs 1986 per CTA in 3.51 ms (same call,
// results/h100-fa3-2026-11-27-sched), i.e. ~3 blocks' time more per tile.
// The balance hardly depends on it (1.01-1.02x the mean for 0 to 6).
inline constexpr std::int64_t kTileOverheadBlocks = 3;

// What the plan counts per (layout, 128-row query tile) (block_sparse_device.hpp
// tile_work); the schedule copies it into each TileEntry, so a tile starts
// without the dependent loads of its count and its row's run offsets.
struct TileWork {
  std::int32_t key_blocks = 0;  // 0: the kernel skips the tile
  std::int32_t run_begin = 0;   // its query block's first run (BlockSparseRule::row_runs, in runs)
  std::int32_t run_count = 0;
  std::int32_t last_key = 0;  // first key of its last key block (see TileEntry)
};
// The producer reads each entry from the schedule and publishes what the
// consumers need in a shared-memory slot with the tile's Q (forward_kernel.cuh
// QSlot::entry_slot). b, h, q_begin: the tile's batch, head and first query
// row, decoded here on the host (block-sparse: one segment, r = 1), so the
// kernel's tile start has no 64-bit divisions (tile_scheduler.cuh
// decode_entry_tile; decode_tile's ~310 instructions a warp were 5.6% of the
// 16K kernel's warp samples, results/h100-fa3-2026-11-27-epilogue).
// last_key: the first key of the tile's last key block. Runs ascend and are
// clipped at the causal limit and the sequence end, so only that block can
// need a mask (the causal diagonal, a partial block at the end): the
// consumers mask from it alone and do not walk the runs (forward_kernel.cuh
// consume); the producer still walks them for the TMA rows.
struct alignas(16) TileEntry {
  std::int32_t idx;  // the kernel's tile index (decode order, tile_scheduler.cuh)
  std::int32_t key_blocks, run_begin, run_count;
  std::int32_t b, h, q_begin, last_key;
};

// A 128-row query tile of (b, h) whose rows see no key block: the forward
// kernel skips it, so the fill kernel writes its rows' out = 0, lse = -inf
// (forward_launch.cuh launch_fill_empty), and nothing else is filled.
struct EmptyTile {
  std::int32_t b, h, q_begin, unused;
};

// The tiles of work[layout * tiles + qt] (see tile_schedule below) with no
// key block, for every (batch, head), in (b, h, qt) order.
inline std::vector<EmptyTile> empty_tiles(const std::vector<TileWork>& work, std::int64_t layouts, std::int64_t batch,
                                          std::int64_t heads, std::int64_t tiles) {
  std::vector<EmptyTile> out;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t qt = 0; qt < tiles; ++qt)
        if (work[std::size_t((layouts == 1 ? 0 : h) * tiles + qt)].key_blocks == 0)
          out.push_back(EmptyTile{std::int32_t(b), std::int32_t(h), std::int32_t(128 * qt), 0});
  return out;
}

struct TileSchedule {
  int ctas = 0;  // grid size; 0: no schedule (nothing to run, or too many tiles)
  // CTA c runs tiles[offsets[c]] ... tiles[offsets[c + 1] - 1], in this order.
  std::vector<std::int32_t> offsets;
  std::vector<TileEntry> tiles;
};

// work[layout * tiles + qt] for each (layout, query tile); head h has layout
// h, or 0 when layouts == 1. One segment per (batch, head). max_ctas: the
// SMs (one CTA fits per SM). head_major = false hands causal tiles out in
// the kernel's causal order instead (for comparison).
inline TileSchedule tile_schedule(const std::vector<TileWork>& work, std::int64_t layouts, std::int64_t batch,
                                  std::int64_t heads, std::int64_t tiles, bool causal, int max_ctas,
                                  bool head_major = true) {
  TileSchedule s;
  const std::int64_t groups = batch * heads, total = groups * tiles;
  // (128 * tiles < 2^31: TileEntry::q_begin; TMA row coordinates are 32-bit anyway.)
  if (total >= (std::int64_t(1) << 31) || 128 * tiles >= (std::int64_t(1) << 31) || max_ctas <= 0) return s;
  auto at = [&](std::int64_t h, std::int64_t qt) -> const TileWork& {
    return work[std::size_t((layouts == 1 ? 0 : h) * tiles + qt)];
  };
  // The tiles to run, in the order they are handed out (see the top).
  std::vector<TileEntry> order;
  order.reserve(std::size_t(total));
  // idx = g * tiles + qt, or causal (tiles - 1 - qt) * groups + g, with g = b * heads + h
  // (decode_tile's order); q_begin = 128 qt (128-row tiles).
  auto add = [&](std::int64_t idx, std::int64_t g, std::int64_t qt, const TileWork& w) {
    if (w.key_blocks > 0)
      order.push_back(TileEntry{std::int32_t(idx), w.key_blocks, w.run_begin, w.run_count, std::int32_t(g / heads),
                                std::int32_t(g % heads), std::int32_t(128 * qt), w.last_key});
  };
  if (causal && !head_major) {
    for (std::int64_t idx = 0; idx < total; ++idx)  // decode_tile: qt = tiles - 1 - idx / groups
      add(idx, idx % groups, tiles - 1 - idx / groups, at((idx % groups) % heads, tiles - 1 - idx / groups));
  } else {
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::size_t first = order.size();
      for (std::int64_t qt = 0; qt < tiles; ++qt)  // decode_tile's tile index of (g, qt)
        add(causal ? (tiles - 1 - qt) * groups + g : g * tiles + qt, g, qt, at(g % heads, qt));
      std::stable_sort(order.begin() + std::ptrdiff_t(first), order.end(),
                       [](const TileEntry& a, const TileEntry& b) { return a.key_blocks > b.key_blocks; });
    }
  }
  s.ctas = int(std::int64_t(order.size()) < max_ctas ? std::int64_t(order.size()) : max_ctas);
  if (s.ctas == 0) return s;
  // Least-loaded CTA first; ties to the lower CTA index (deterministic).
  using Load = std::pair<std::int64_t, int>;
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> free_at;
  for (int c = 0; c < s.ctas; ++c) free_at.emplace(0, c);
  std::vector<std::vector<TileEntry>> lists(std::size_t(s.ctas));
  for (const TileEntry& e : order) {
    const Load l = free_at.top();
    free_at.pop();
    lists[std::size_t(l.second)].push_back(e);
    free_at.emplace(l.first + e.key_blocks + kTileOverheadBlocks, l.second);
  }
  s.tiles.reserve(order.size());
  for (const auto& l : lists) {
    s.offsets.push_back(std::int32_t(s.tiles.size()));
    s.tiles.insert(s.tiles.end(), l.begin(), l.end());
  }
  s.offsets.push_back(std::int32_t(s.tiles.size()));
  return s;
}

}  // namespace dilated::cuda_fa3::details
