// cuda_fa3/details/key_walk.cuh - the key blocks of a forward query tile in
// the order the producer loads them and the consumers mask them: per block
// its first key (sparse index in the segment), the mask bound, the K/V
// descriptor and the descriptor row. Dense/dilated or block-sparse; the
// record leaves room for tiles that walk several branches' keys through
// their own descriptors (perf_tests/results/h100-fa3-2026-11-27-sched/).
#pragma once

#include <cstdint>

#include "cuda_fa3/details/tile_scheduler.cuh"

namespace dilated::cuda_fa3::details {

struct KeyBlock {
  std::int64_t key;  // first key of the block (sparse index)
  std::int64_t end;  // keys from here on are masked
  std::int64_t row;  // descriptor row of `key`
  int map;           // K/V descriptor
};

// Advanced exactly once per block, in block order, by each thread that uses it.
// kSkip: a skipping branch of a LongNet chain (dedup_tile, longnet_dedup.hpp).
template <int Block, bool kBlockSparse, bool kSkip = false>
struct KeyWalk;

// One dense/dilated branch: block i starts at key k_begin + i * Block.
template <int Block>
struct KeyWalk<Block, false> {
  const QueryTile& t;
  __device__ __forceinline__ explicit KeyWalk(const QueryTile& tile, bool = true) : t(tile) {}
  __device__ __forceinline__ KeyBlock next(int kb) {
    const std::int64_t key = t.k_begin + std::int64_t(kb) * Block;  // k_begin: 0 unless windowed
    return KeyBlock{key, t.k_end, t.k_map_row0 + key, t.k_phase};
  }
};

// A LongNet chain's skipping branch: block i starts at dedup_block_key (the
// blocks of [0, k_end) without the tile's skipped run). Not windowed.
template <int Block>
struct KeyWalk<Block, false, true> {
  const QueryTile& t;
  __device__ __forceinline__ explicit KeyWalk(const QueryTile& tile, bool = true) : t(tile) {}
  __device__ __forceinline__ KeyBlock next(int kb) {
    const std::int64_t key = dedup_block_key(kb, Block, t.skip_begin, t.skip_end);
    return KeyBlock{key, t.k_end, t.k_map_row0 + key, t.k_phase};
  }
};

// Block-sparse: the tile's runs (pattern.hpp key_spans) cut into blocks. At
// 90% sparsity most runs are one block long, so nearly every block starts a
// run; the run after the current one is loaded when the current one is
// entered, so its global-memory latency hides behind a block's products
// instead of stalling the consumers' softmax (BlockWalk, which the v1
// backward keeps, loads a run when it is needed).
template <int Block>
struct KeyWalk<Block, true> {
  const QueryTile& t;
  std::int64_t row = 0, end = 0;
  int next_span = 0;
  int2 pending = {0, 0};  // run next_span, in blocks of spans.block keys
  __device__ __forceinline__ int2 load(int i) const {
    return *reinterpret_cast<const int2*>(t.spans.runs + 2 * i);  // 8-byte aligned (plan upload)
  }
  // walk = false: the caller never calls next() (consumers of scheduled
  // tiles mask from QueryTile::last_key), so nothing is loaded.
  __device__ __forceinline__ explicit KeyWalk(const QueryTile& tile, bool walk = true) : t(tile) {
    if (walk && t.spans.count > 0) pending = load(0);
  }
  __device__ __forceinline__ KeyBlock next(int) {
    while (row >= end) {  // skips runs emptied by causal clipping
      const std::int64_t b = std::int64_t(pending.x) * t.spans.block, e = std::int64_t(pending.y) * t.spans.block;
      row = b > t.spans.lo ? b : t.spans.lo;
      end = e < t.spans.hi ? e : t.spans.hi;
      if (++next_span < t.spans.count) pending = load(next_span);
    }
    const std::int64_t key = row;
    row += Block;
    return KeyBlock{key, t.k_end, t.k_map_row0 + key, t.k_phase};
  }
};

// A fused LongNet chain's tile (longnet_fused_chain.hpp): every block is
// Block whole keys of one class of one unit (no masks), read through the
// descriptor of its class's residue, with the weight of its pair classes.
template <int Block>
struct FusedKeyWalk {
  FusedWalker w;
  std::int32_t phase0, step;  // descriptor of key class k: phase0 + step * k
  float log2_m = 0.f;         // the last block's log2 multiplicity
  __device__ __forceinline__ FusedKeyWalk(const ForwardParams& p, const QueryTile& t)
      : w(p.chain, fused_head_class(p.chain, t.h), t.chain_class, t.chain_unit, Block),
        phase0(t.h - w.hc * p.chain.dilation0),
        step(p.chain.dilation0) {}
  __device__ __forceinline__ KeyBlock next(int) {
    const FusedBlock b = w.current();
    log2_m = w.log2_m;
    w.advance();
    const std::int64_t row = std::int64_t(b.unit) * w.f->class_rows + b.first;
    // key/end: a whole block (needs_mask is false).
    return KeyBlock{0, Block, row, phase0 + step * b.kcls};
  }
};

// The walk of a tile: KeyWalk(tile, walk), or for fused chains FusedKeyWalk(p, tile).
template <class Walk, bool kFused>
__device__ __forceinline__ Walk make_key_walk(const ForwardParams& p, const QueryTile& t, bool walk) {
  if constexpr (kFused) return Walk(p, t);
  else return Walk(t, walk);
}

}  // namespace dilated::cuda_fa3::details
