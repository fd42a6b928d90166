// cuda_fa3/details/forward_kernel.cuh - the H100 forward kernel for one branch:
// a producer warpgroup streams K/V blocks with TMA into a ring of shared-memory
// stages; two consumer warpgroups (64 query rows each) compute S = Q K^T with
// wgmma from shared memory, an online softmax in registers, and O += P V with
// P fed to wgmma straight from registers.
//
// Dilation is in the TMA descriptors (row stride r, one descriptor per
// residue), so a dilated branch reads exactly its rows: no gather copies.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <type_traits>

#include "cuda_fa3/details/causal_order.hpp"
#include "cuda_fa3/details/dropout.cuh"
#include "cuda_fa3/details/epilogue.cuh"
#include "cuda_fa3/details/forward_params.hpp"
#include "cuda_fa3/details/key_walk.cuh"
#include "cuda_fa3/details/mask.cuh"
#include "cuda_fa3/details/merge_stage.cuh"
#include "cuda_fa3/details/ptx_sm90.cuh"
#include "cuda_fa3/details/score_recompute.cuh"
#include "cuda_fa3/details/softmax.cuh"
#include "cuda_fa3/details/tile_scheduler.cuh"
#include "cuda_fa3/details/tile_shape.hpp"
#include "cuda_fa3/details/wgmma_ops.cuh"

namespace dilated::cuda_fa3::details {

struct Barriers {
  std::uint64_t* q_full;
  std::uint64_t* q_empty;  // consumers are done reading Q: the next tile's may land
  std::uint64_t* k_full;   // [stages]
  std::uint64_t* v_full;
  std::uint64_t* k_empty;
  std::uint64_t* v_empty;
};

// Block-sparse tiles visit few key blocks (~13 at 90% sparsity, N = 16K), so
// the wait for a tile's Q, which with one buffer can only be loaded once the
// previous tile's last S has landed, is a visible share of the tile. A
// second Q buffer after the barriers lets the producer load the next tile's
// Q while this one runs (ForwardParams::q_buffers == 2); its full/empty
// barriers follow all others. Head dims 64 and 128 only (194 KiB at 128;
// it would not fit at 256); other launches keep one. The causal persistent
// kernel (kDynamic) may use it too.
//
// kDynamic: the producer publishes each tile's index in a slot per Q buffer
// (kOffsetSlots, after the second buffer's barriers) for the consumers.
template <class Shape, bool kBlockSparse, bool kDynamic = false>
struct QBuffers {
  static constexpr int kOffsetSlots = Shape::kOffsetBarriers + 8 * (Shape::kBarriers + 2);
  // Slots: kDynamic's two tile indices, or the scheduled block-sparse
  // kernels' two TileEntry records (32 bytes each).
  static constexpr int kSlotBytes = 64;
  static constexpr int kOffsetQ1 = (kOffsetSlots + kSlotBytes + 1023) / 1024 * 1024;
  // (176-key blocks at head_dim 128 leave no room for it: 212 KiB with one.)
  static constexpr bool kTwo = (kBlockSparse || kDynamic) && Shape::kHeadDim <= 128 &&
                               Shape::kBlockN == kDefaultBlockN<Shape::kHeadDim>;  // RegSplit::kScheduled
  static_assert(!kTwo || kOffsetQ1 + Shape::kTileBytesQ + 1024 <= 227 * 1024, "two Q buffers do not fit");
  static constexpr int kSmemBytes = kTwo       ? kOffsetQ1 + Shape::kTileBytesQ + 1024
                                    : kDynamic ? kOffsetSlots + kSlotBytes + 1024
                                               : Shape::kSmemBytes;
};

// Which Q buffer a CTA's tile_iter-th tile uses, its barriers, and how many
// times that buffer was filled before (the barriers' phase). index: 0 or 1
// (the buffer, and kDynamic's tile slot).
template <class Shape, bool kBlockSparse, bool kDynamic = false>
struct QSlot {
  int offset, index;
  std::uint64_t *full, *empty;
  std::uint32_t use;
  __device__ __forceinline__ QSlot(const ForwardParams& p, const Barriers& bar, std::uint32_t tile_iter) {
    using QB = QBuffers<Shape, kBlockSparse, kDynamic>;
    const bool second = QB::kTwo && p.q_buffers == 2 && (tile_iter & 1);
    index = second ? 1 : 0;
    offset = second ? QB::kOffsetQ1 : 0;
    full = bar.q_full + (second ? Shape::kBarriers : 0);
    empty = bar.q_empty + (second ? Shape::kBarriers : 0);
    use = QB::kTwo && p.q_buffers == 2 ? tile_iter >> 1 : tile_iter;
  }
  // kDynamic: the tile index the producer publishes with this buffer's Q
  // (written before the arrive on `full`, read after the wait on it: the
  // mbarrier's release/acquire orders it), -1 when the CTA's tiles are done.
  __device__ __forceinline__ volatile std::int32_t* tile_slot(char* smem) const {
    return reinterpret_cast<volatile std::int32_t*>(smem + QBuffers<Shape, kBlockSparse, kDynamic>::kOffsetSlots) +
           index;
  }
  // Scheduled block-sparse kernels: the TileEntry of the tile whose Q this
  // buffer holds, written by the producer before its arrive on `full` and
  // read by the consumers after their wait on it (the mbarrier orders it),
  // so a consumer starts a tile without a global load in its path (with the
  // entry read from the schedule, ptxas moved it to uniform registers right
  // after the load: 1.2-1.5% of the warps' stall samples at the tile start,
  // ncu, h100-fa3-2026-11-27-fill).
  __device__ __forceinline__ std::uint32_t entry_slot(const char* smem) const {
    return smem_u32(smem + QBuffers<Shape, kBlockSparse, kDynamic>::kOffsetSlots + 32 * index);
  }
};

// What the consumers need of an entry (they do not walk its runs): key
// blocks, b, h, q_begin, last_key. (The whole 32-byte entry, kept live in
// the producer until the Q buffer frees, spilled 20 bytes at head_dim 64.)
__device__ __forceinline__ void store_entry(std::uint32_t slot, const TileEntry& e) {
  asm volatile(
      "st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n"
      "st.shared.b32 [%0+16], %5;" ::"r"(slot),
      "r"(e.key_blocks), "r"(e.b), "r"(e.h), "r"(e.q_begin), "r"(e.last_key)
      : "memory");
}

// Every lane reads the entry; lane 0's copy is broadcast so the compiler
// knows it is warp-uniform (as the kDynamic tile index, consumer loop).
__device__ __forceinline__ TileEntry load_entry(std::uint32_t slot) {
  TileEntry e{};
  asm volatile(
      "ld.shared.v4.b32 {%0, %1, %2, %3}, [%5];\n"
      "ld.shared.b32 %4, [%5+16];"
      : "=r"(e.key_blocks), "=r"(e.b), "=r"(e.h), "=r"(e.q_begin), "=r"(e.last_key)
      : "r"(slot)
      : "memory");
  e.key_blocks = __shfl_sync(0xffffffffu, e.key_blocks, 0);
  e.b = __shfl_sync(0xffffffffu, e.b, 0);
  e.h = __shfl_sync(0xffffffffu, e.h, 0);
  e.q_begin = __shfl_sync(0xffffffffu, e.q_begin, 0);
  e.last_key = __shfl_sync(0xffffffffu, e.last_key, 0);
  return e;  // idx, run_begin, run_count: 0 (not read by the consumers)
}

// wgmma_wait<0> under another asm string, for the other arm of a branch that
// also waits (consume): identical asm in both arms would be hoisted by LLVM
// into one wait before the branch, which is what the branch is there to
// prevent (the branch is warpgroup-uniform: .aligned waits allow no other).
__device__ __forceinline__ void wgmma_wait_all_unmerged() {
  asm volatile("wgmma.wait_group.sync.aligned 0; // unmerged" ::: "memory");
}

template <class Shape>
__device__ __forceinline__ void load_tile(const CUtensorMap* map, char* dst, std::uint64_t* bar,
                                          int rows_bytes_per_panel, std::int64_t row, int h, int b) {
#pragma unroll
  for (int panel = 0; panel < Shape::kPanels; ++panel)
    tma_load_4d(dst + panel * rows_bytes_per_panel, map, bar, 64 * panel, int(row), h, b);
}

// Producer: one thread issues every TMA load. `it` counts key blocks over all
// tiles this CTA has run (the K/V ring's position), `tile_iter` its tiles.
// kDynamic: `idx` is the tile's index, published to the consumers with its Q.
// kDedup: a LongNet chain branch (longnet_dedup.hpp), which may skip a run of keys.
// entry (scheduled block-sparse tiles): published in the Q buffer's slot for the consumers.
// kFused: a fused LongNet chain (longnet_fused_chain.hpp): blocks from several units and classes.
template <class Shape, bool kBlockSparse, bool kDynamic = false, bool kDedup = false, bool kFused = false>
__device__ void produce(const ForwardArgs& args, const QueryTile& t, char* smem, Barriers bar, std::uint32_t it,
                        std::uint32_t tile_iter, std::int32_t idx = 0, const TileEntry* entry = nullptr) {
  const CUtensorMap* qmap = &args.q[t.q_phase];
  const QSlot<Shape, kBlockSparse, kDynamic> q(args.p, bar, tile_iter);
  if (q.use > 0) mbar_wait(q.empty, (q.use - 1) & 1);
  if constexpr (kDynamic) *q.tile_slot(smem) = idx;
  if constexpr (kBlockSparse && !kDynamic && QBuffers<Shape, kBlockSparse>::kTwo)
    if (entry) store_entry(q.entry_slot(smem), *entry);
  mbar_arrive_expect_tx(q.full, Shape::kTileBytesQ);
  load_tile<Shape>(qmap, smem + q.offset, q.full, Shape::kPanelBytesQ, t.q_map_row0 + t.q_begin, t.h, t.b);
  using Walk = std::conditional_t<kFused, FusedKeyWalk<Shape::kBlockN>, KeyWalk<Shape::kBlockN, kBlockSparse, kDedup>>;
  Walk walk = make_key_walk<Walk, kFused>(args.p, t, true);  // key_walk.cuh
  for (int kb = 0; kb < t.key_blocks; ++kb, ++it) {
    const int stage = it % Shape::kStages;
    const std::uint32_t round = it / Shape::kStages;
    const KeyBlock key = walk.next(kb);
    const std::int64_t row = key.row;
    const CUtensorMap* kmap = &args.k[key.map];
    const CUtensorMap* vmap = &args.v[key.map];
    if (round > 0) mbar_wait(&bar.k_empty[stage], (round - 1) & 1);
    mbar_arrive_expect_tx(&bar.k_full[stage], Shape::kTileBytesKV);
    load_tile<Shape>(kmap, smem + Shape::kOffsetK + stage * Shape::kTileBytesKV, &bar.k_full[stage],
                     Shape::kPanelBytesKV, row, t.h, t.b);
    if (round > 0) mbar_wait(&bar.v_empty[stage], (round - 1) & 1);
    mbar_arrive_expect_tx(&bar.v_full[stage], Shape::kTileBytesKV);
    load_tile<Shape>(vmap, smem + Shape::kOffsetV + stage * Shape::kTileBytesKV, &bar.v_full[stage],
                     Shape::kPanelBytesKV, row, t.h, t.b);
  }
}

// A merging launch stages the old rows where they fit (merge_stage.cuh),
// after everything else the kernel lays out: QBuffers' end, whatever it
// holds (a kernel with more shared memory must pass its own end here).
// The causal tile-counter kernel (kDynamic) does not stage yet: it merged
// with the stage after its last GPU run, untested together. Its end
// (tile slots, second Q buffer) is already QBuffers' own, so at head_dim 128
// with 128-key blocks the stage would fit (227 KiB less 512 bytes); the
// merging causal launches (LongNet branches after the first, windowed calls)
// read the old rows in the epilogue meanwhile.
template <class Shape, bool kBlockSparse, bool kDynamic = false>
using KernelMergeStage = MergeStage<Shape, QBuffers<Shape, kBlockSparse, kDynamic>::kSmemBytes - 1024>;
template <class Shape, bool kDropout, bool kBlockSparse, bool kDynamic = false>
inline constexpr bool kMergeStage =
    KernelMergeStage<Shape, kBlockSparse, kDynamic>::kFits && !kBlockSparse && !kDropout && !kDynamic;

// Consumer warpgroup `wg` (0 or 1) owns query rows [64 wg, 64 wg + 64) of the tile.
//
// Software pipeline inside the warpgroup (FA3's intra-warpgroup overlap):
// while the tensor cores compute S(kb) = Q K(kb)^T and O += P(kb-1) V(kb-1),
// nothing waits; softmax of S(kb) then runs while P(kb-1) V(kb-1) finishes.
//
// Pingpong between the consumer warpgroups (two, or three in round robin):
// each issues its products only on its turn (named barrier 1 + wg) and then
// hands the turn to the next, so one warpgroup's softmax runs while the
// others' products occupy the tensor cores. All warpgroups of a tile visit
// the same number of key blocks, so the turns pair up; warpgroup 0 goes first
// and takes one extra turn at the end (the last warpgroup's final hand-over).
//
// kDedup: a LongNet chain branch (longnet_dedup.hpp): its key walk skips the
// run the previous chain branch counts, and its probabilities carry the
// multiplicity of the later chain branches that skip them (two per-thread
// constants per tile: rows and columns mod 8 are fixed per register).
//
// kFused: a fused LongNet chain (longnet_fused_chain.hpp): whole blocks of
// several units and classes, each with one weight (FusedKeyWalk).
template <class T, class Shape, bool kDropout, bool kBlockSparse, bool kDynamic = false, bool kDedup = false,
          bool kFused = false>
__device__ void consume(const ForwardArgs& args, const QueryTile& t, char* smem, Barriers bar,
                        int wg, int thread, std::uint32_t it, std::uint32_t tile_iter) {
  constexpr int kD = Shape::kHeadDim, kN = Shape::kBlockN, kStages = Shape::kStages;
  const ForwardParams& p = args.p;
  const int warp = thread / 32, lane = thread % 32;
  std::int64_t rows[2];
  rows[0] = t.q_begin + 64 * wg + 16 * warp + lane / 4;
  rows[1] = rows[0] + 8;

  float o[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) o[i] = 0.f;
  float s[kN / 2];
  std::uint32_t a[kN / 16][4];  // P packed to 16-bit pairs: the register A operand of P V
  float correction[2];
  OnlineSoftmax<kN, kD> softmax;
  const QSlot<Shape, kBlockSparse, kDynamic> q_slot(p, bar, tile_iter);
  // This warpgroup's 64 rows in every panel. wg through a shuffle: the
  // compiler then knows it is warp-uniform and keeps the Q descriptors of
  // issue_scores in uniform registers (with wg from threadIdx it built them
  // in ordinary registers and moved each to a uniform one before its wgmma).
  // Not under dropout: head_dim 256 with dropout spilled 8 bytes with it.
  // kDynamic: the Q buffer's offset varies by tile, so the whole offset goes
  // through the shuffle (with only wg shuffled, 15 R2UR per step remained in
  // the loop, SASS, CUDA 13.0).
  const char* q_smem = kDynamic ? smem + __shfl_sync(0xffffffffu, q_slot.offset + wg * 64 * 128, 0)
                                : smem + q_slot.offset + (kDropout ? wg : __shfl_sync(0xffffffffu, wg, 0)) * 64 * 128;

  constexpr int kWgs = Shape::kConsumerWarpgroups;
  auto my_turn = [&] { named_sync(1 + wg, 256); };
  // (Two warpgroups: 2 - wg, the form of the two-warpgroup kernel before
  // three existed, so that kernel's code stays the same instruction for instruction.)
  auto pass_turn = [&] { named_arrive(kWgs == 2 ? 2 - wg : 1 + (wg + 1) % kWgs, 256); };
  if (wg == kWgs - 1) pass_turn();

  auto issue_scores = [&](int kb) {
    const int stage = (it + kb) % kStages;
    const char* k_smem = smem + Shape::kOffsetK + stage * Shape::kTileBytesKV;
    mbar_wait(&bar.k_full[stage], ((it + kb) / kStages) & 1);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int panel = kk / 4, step = (kk % 4) * 2;  // 32 bytes = 2 units of 16
      const std::uint64_t da = desc_k_major_sw128(q_smem + panel * Shape::kPanelBytesQ) + step;
      const std::uint64_t db = desc_k_major_sw128(k_smem + panel * Shape::kPanelBytesKV) + step;
      Wgmma<T, kN>::ss(s, da, db, kk > 0);
    }
    wgmma_commit();
  };
  auto issue_pv = [&](int kb) {
    const int stage = (it + kb) % kStages;
    const char* v_smem = smem + Shape::kOffsetV + stage * Shape::kTileBytesKV;
    mbar_wait(&bar.v_full[stage], ((it + kb) / kStages) & 1);
    wgmma_fence();
    // One descriptor and a constant step per 16 keys (2048 bytes = 128 units
    // of 16 in the start-address field, which cannot carry: shared memory
    // offsets stay below 2^18): rebuilding it per step cost 5 uniform
    // instructions per wgmma, on the path the other warpgroup waits for.
    const std::uint64_t dv = desc_mn_major_sw128(v_smem, Shape::kPanelBytesKV);
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      const std::uint64_t db = dv + kk * (16 * 128 >> 4);
      Wgmma<T, kD>::rs_tb(o, a[kk], db, 1);
    }
    wgmma_commit();
  };
  // Scheduled block-sparse tiles (the entry's last_key, QueryTile): no run
  // walk here, only the last block can need a mask. Others walk their keys.
  const bool keys_from_entry =
      kBlockSparse && QBuffers<Shape, kBlockSparse>::kTwo && !kDynamic && p.tile_list && p.entry_decode;
  using Walk = std::conditional_t<kFused, FusedKeyWalk<kN>, KeyWalk<kN, kBlockSparse, kDedup>>;
  Walk walk = make_key_walk<Walk, kFused>(p, t, !keys_from_entry);  // softmax_step(kb) runs once per kb, in order
  float log2_m[2] = {0.f, 0.f};  // kDedup: log2 of the multiplicity of column parity 0 / 1
  if constexpr (kDedup) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int m = dedup_multiplicity(p.dedup, t.h, lane / 4, 2 * (lane % 4) + c);  // 1..4
      log2_m[c] = m == 1 ? 0.f : m == 2 ? 1.f : m == 3 ? 1.5849625007211562f : 2.f;
    }
  }
  // Blocks after the first: the lazy softmax (softmax.cuh lazy_probabilities;
  // not under dropout, whose kernels keep their registers), decided per warp:
  // all its rows within the limit (nearly every block) - accept; some past
  // it - settle them; an exp2 overflowed - compute the warp's S(kb) again
  // (score_recompute.cuh; K(kb) is still resident: consume releases its
  // stage after the softmax) for the exact update. Returns true when the
  // block is done, false when s holds S(kb) again.
  const bool lazy = !kDropout && p.lazy_softmax;
  auto lazy_step = [&](int kb, const float* lm) {
    float sum[2];
    const bool ok = softmax.template lazy_probabilities<(kFused || kDedup)>(s, p.scale_log2, lm, sum);
    if (__all_sync(0xffffffffu, ok)) {
      softmax.accept_lazy(correction, sum);
      return true;
    }
    if (!softmax.lazy_overflowed(s)) {
      softmax.settle_lazy(s, correction, sum);
      return true;
    }
    const char* k_smem = smem + Shape::kOffsetK + ((it + kb) % kStages) * Shape::kTileBytesKV;
    recompute_scores<T, kD, kN>(q_smem + 16 * warp * 128, Shape::kPanelBytesQ, k_smem, Shape::kPanelBytesKV, lane, s);
    return false;
  };
  // The keys of block kb (walk.next(kb): once per kb, in order), whether it
  // needs a mask (warpgroup-uniform: the range is the tile's) and the log2
  // weights of its column parities.
  struct BlockKeys {
    std::int64_t begin = 0, end = 0;
    bool masked = false;
    float lm[2];
  };
  auto block_keys = [&](int kb) {
    BlockKeys k;
    if constexpr (kFused) {  // whole blocks: no mask; one weight for the block
      walk.next(kb);
      k.lm[0] = k.lm[1] = walk.log2_m;
    } else {
      if (keys_from_entry) {
        // Far below every query: needs_mask is false for all blocks but the last.
        k.begin = kb == t.key_blocks - 1 ? t.last_key : -(std::int64_t(1) << 40);
        k.end = t.k_end;
      } else {
        const KeyBlock key = walk.next(kb);
        k.begin = key.key;
        k.end = key.end;
      }
      k.masked = needs_mask<kN>(k.begin, k.end, t.q_begin + 64 * wg, p.causal);
      k.lm[0] = log2_m[0];
      k.lm[1] = log2_m[1];
    }
    return k;
  };
  auto softmax_block = [&](int kb, const BlockKeys& k) {
    if constexpr (kFused) {
      if (lazy && kb > 0 && lazy_step(kb, k.lm)) return;
      softmax.update_weighted(s, correction, p.scale_log2, k.lm);
      return;
    }
    if (k.masked) apply_mask<kN>(s, k.begin, k.end, rows, p.causal, lane);
    if (lazy && kb > 0) {
      if (lazy_step(kb, k.lm)) return;
      if (k.masked) apply_mask<kN>(s, k.begin, k.end, rows, p.causal, lane);
    }
    if constexpr (kDedup) softmax.update_weighted(s, correction, p.scale_log2, k.lm);
    else softmax.update(s, correction, p.scale_log2);
    if constexpr (kDropout)  // after the row sums: the LSE is that of the undropped softmax
      apply_dropout<kN>(s, p.dropout, p.keep_scale, t.b, t.h, p.branch, t.first,
                        p.pattern.dilation[p.branch], rows, k.begin, lane);
  };
  auto softmax_step = [&](int kb) { softmax_block(kb, block_keys(kb)); };
  // P in the accumulator layout is already the register A operand of P V,
  // once packed to 16-bit pairs.
  auto pack_p = [&] {
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const auto packed = Pack2<T>::make(s[8 * kk + 2 * x], s[8 * kk + 2 * x + 1]);
        a[kk][x] = *reinterpret_cast<const std::uint32_t*>(&packed);
      }
    }
  };

  // A merging launch: this warp's old O rows and LSE, read while the tile runs.
  constexpr bool kStage = kMergeStage<Shape, kDropout, kBlockSparse, kDynamic>;
  using MS = KernelMergeStage<Shape, kBlockSparse, kDynamic>;
  char* merge_area = MS::warp_area(smem, wg, warp);
  if (kStage && p.merge && p.merge_prefetch)
    prefetch_merge_rows<T, MS>(p, t, t.q_begin + 64 * wg + 16 * warp, merge_area, lane);

  mbar_wait(q_slot.full, q_slot.use & 1);
  my_turn();
  issue_scores(0);
  pass_turn();
  wgmma_wait<0>();
  fence_registers(s);
  mbar_arrive(&bar.k_empty[it % kStages]);
  softmax_step(0);  // O is still zero: nothing to rescale
  pack_p();
  // The lazy softmax's common case in a loop of its own: every warp of the
  // warpgroup accepts the block lazily (a bar.red vote, then __any_sync so
  // ptxas keeps it warp-uniform; the warpgroup leaves together, so its wgmma
  // instructions stay aligned), no rescale, no mask. The rare paths (mask,
  // settle, S again and the exact update) are not in its address range: the
  // consumers' loop is instruction-fetch sensitive (H100, 2026-11-28 absorb:
  // the same work 7% slower with the loop twice as long). At the first block
  // some warp cannot accept, the warpgroup finishes that block the general way
  // and runs the rest of the tile in the general loop below, which keeps every
  // path. H100, LongNet 1M x 16 bf16, same executables, alternating
  // (perf_tests/results/h100-fa3-2026-11-28-hotloop): d128 48.4-48.7 ->
  // 47.0-47.2 ms, d64 33.8 -> 33.0, d256 91.1 -> 90.4-90.8; the fused loop is
  // 636 SASS instructions where the general one is 1500-1600 (CUDA 13.0).
  // Where: the fused kernels and kDedup at head_dim 128 (LongNet's later
  // chains). Not under dropout (no lazy softmax). Not measured for the
  // dense, causal and block-sparse kernels: with it ptxas spilled 84-676
  // bytes in them (0-112 without). Not kDedup at head_dim 64 / 256 (ptxas
  // spilled 180 / 120 bytes against 32 / 8). The vote uses named barrier
  // 8 + wg (the turns use 1..3). Going back from the finished block into the hot
  // loop instead of on in the general loop made ptxas serialize the wgmma
  // pipeline (C7515) in every kernel that has it, so a tile that stops once
  // stays in the general loop.
  // P(kb-1) V(kb-1) has retired: its P registers and V stage are free. The
  // wait ends a block on kb's parity, one instruction for the whole
  // warpgroup (the general loop below says why); not under dropout.
  auto retire_pv = [&](int kb) {
    if (kb & 1)
      wgmma_wait<0>();
    else
      wgmma_wait_all_unmerged();
    fence_registers(o);
    keep_alive(a);
    mbar_arrive(&bar.v_empty[(it + kb - 1) % kStages]);
  };
  constexpr bool kHotLoop = !kDropout && (kFused || (kDedup && kD == 128));
  int kb = 1;
  if constexpr (kHotLoop) {
    if (lazy) {
      bool stopped = false, ok = false;
      float sum[2];
      BlockKeys k;
      for (; kb < t.key_blocks; ++kb) {
        my_turn();
        issue_scores(kb);
        issue_pv(kb - 1);
        pass_turn();
        wgmma_wait<1>();
        fence_registers(s);
        k = block_keys(kb);
        ok = !k.masked && softmax.template lazy_probabilities<(kFused || kDedup)>(s, p.scale_log2, k.lm, sum);
        if (!__any_sync(0xffffffffu, named_all(8 + wg, 128, ok))) {
          stopped = true;
          break;
        }
        softmax.accept_lazy(correction, sum);
        mbar_arrive(&bar.k_empty[(it + kb) % kStages]);
        retire_pv(kb);
        pack_p();
      }
      if (stopped) {  // block kb, each warp as softmax_block decides
        if (k.masked) {
          softmax_block(kb, k);  // s is still S(kb): the mask comes first
        } else if (__all_sync(0xffffffffu, ok)) {
          softmax.accept_lazy(correction, sum);
        } else if (!softmax.lazy_overflowed(s)) {
          softmax.settle_lazy(s, correction, sum);
        } else {
          const char* k_smem = smem + Shape::kOffsetK + ((it + kb) % kStages) * Shape::kTileBytesKV;
          recompute_scores<T, kD, kN>(q_smem + 16 * warp * 128, Shape::kPanelBytesQ, k_smem, Shape::kPanelBytesKV,
                                      lane, s);
          if constexpr (kFused || kDedup) softmax.update_weighted(s, correction, p.scale_log2, k.lm);
          else softmax.update(s, correction, p.scale_log2);
        }
        mbar_arrive(&bar.k_empty[(it + kb) % kStages]);
        const bool need = __any_sync(0xffffffffu, correction[0] != 1.f || correction[1] != 1.f);
        retire_pv(kb);
        if (need) OnlineSoftmax<kN, kD>::rescale(o, correction);
        pack_p();
        ++kb;
      }
    }
  }
  for (; kb < t.key_blocks; ++kb) {
    my_turn();
    issue_scores(kb);
    issue_pv(kb - 1);
    pass_turn();
    wgmma_wait<1>();  // S(kb) has landed; P(kb-1) V(kb-1) may still run
    fence_registers(s);
    // K(kb) stays until after the softmax: the lazy softmax may compute S
    // again from it. (The producer refills this stage only after V(kb)'s release, a
    // block later, anyway.) Dropout, not lazy, releases it first as before:
    // its Philox rounds spilled 164 bytes with the late release (ptxas, CUDA 13.0).
    if constexpr (kDropout) mbar_arrive(&bar.k_empty[(it + kb) % kStages]);
    softmax_step(kb);
    if constexpr (!kDropout) mbar_arrive(&bar.k_empty[(it + kb) % kStages]);
    // Once the running max settles (most blocks), the factor is 1 for every
    // row of the warp: skip the 64-wide multiply (`need`, voted per warp).
    // The wait for P(kb-1) V(kb-1) must come after softmax_step in the SASS
    // and be one instruction for the whole warpgroup:
    //  - ptxas hoists a wgmma wait to the top of its basic block: written
    //    after softmax_step in the same block, it ran before the whole
    //    softmax (SASS, CUDA 13.0), so the softmax never overlapped P V. A
    //    branch must end the softmax's block before the wait.
    //  - wgmma.wait_group is .sync.aligned: every warp of the warpgroup must
    //    execute the same wait instruction. Waiting inside the arms of the
    //    per-warp `need` branch (main until 2026-11-27) let warps of one
    //    warpgroup take different arms (compute-sanitizer synccheck:
    //    "Mismatching warpgroup instruction pc between warps"), and voting
    //    `need` over the warpgroup with bar.red cost 6-13% of every forward
    //    (H100, 9371cba: ptxas no longer knew the branch was warp-uniform and
    //    moved the loop's descriptor arithmetic off the uniform datapath;
    //    with an __any_sync of the vote's result it kept it: -2.3% to +0.8%).
    // So the block ends at a branch on kb's parity, the same for all 128
    // threads: both arms are the same wait (two asm strings, so LLVM does not
    // merge them back into the softmax's block), every warp runs the same
    // one, and either arm is right whatever the condition. The per-warp
    // `need` branch after it holds no wgmma instruction. Check the SASS
    // (cuobjdump -sass) after changing this: one WARPGROUP.DEPBAR.LE gsb0,
    // 0x0 per path, after the block's MUFU.EX2 run.
    // Dropout keeps the earlier order (the wait written first; ptxas runs it
    // before the softmax): its Philox rounds next to the in-flight O and P
    // registers spilled 64-176 bytes with the late wait (ptxas, CUDA 13.0).
    // Its one wait is outside the per-warp branch, so it is legal as it is.
    // H100, 2026-11-27 (perf_tests/results/h100-fa3-2026-11-27-vote): synccheck
    // 0 errors with this form where the per-warp arms gave 3; the forward
    // within -1.1% to +0.7% of them (d64 to d256, dense and causal, LongNet).
    auto release_v = [&] {  // P(kb-1) V(kb-1) has retired: its P registers and V stage are free
      keep_alive(a);
      mbar_arrive(&bar.v_empty[(it + kb - 1) % kStages]);
    };
    if constexpr (kDropout) {
      wgmma_wait<0>();
      fence_registers(o);
      release_v();
      if (__any_sync(0xffffffffu, correction[0] != 1.f || correction[1] != 1.f))
        OnlineSoftmax<kN, kD>::rescale(o, correction);
    } else {
      const bool need = __any_sync(0xffffffffu, correction[0] != 1.f || correction[1] != 1.f);
      retire_pv(kb);
      if (need) OnlineSoftmax<kN, kD>::rescale(o, correction);
    }
    pack_p();
  }
  mbar_arrive(q_slot.empty);  // every S of this tile has landed: Q may be replaced
  my_turn();
  issue_pv(t.key_blocks - 1);
  pass_turn();
  if (wg == 0) my_turn();  // consume warpgroup 1's last hand-over
  wgmma_wait<0>();
  fence_registers(o);
  keep_alive(a);
  mbar_arrive(&bar.v_empty[(it + t.key_blocks - 1) % kStages]);

  float lse[2];
  softmax.finish(o, lse);
  const std::int64_t r = t.q_stride;
  std::int64_t position[2];
  bool valid[2];
  for (int i = 0; i < 2; ++i) {
    valid[i] = rows[i] < t.q_end;
    position[i] = t.first + rows[i] * r - p.q_window_begin;  // row of the out/lse window
  }
  if (kStage && p.merge && p.merge_prefetch)
    store_rows_merged<T, MS, kD>(p, t.b, t.h, position, valid, o, lse, merge_area, lane);
  else if (!p.merge && p.wide_stores)
    store_rows_wide<T, kD>(p, t.b, t.h, position, valid, o, lse, lane);
  else
    store_rows<T, kD>(p, t.b, t.h, position, valid, o, lse, lane);
}

// Block-sparse kernels of head_dim <= 128 run the plan's tile schedule
// (for_each_tile) with two Q buffers (QBuffers). Their producers spilled
// 56-128 bytes at the usual 24 registers (ptxas, CUDA 13.0), so the split
// is 40 / 232 there (no spills; 40 x 128 + 232 x 256 <= 64K). Head_dim 256,
// whose 64 x 256 O needs the consumers' 240, spilled 40-152 bytes in the
// producer at 24 or 32 registers with the schedule, so it keeps the stride
// and one Q buffer (forward_launch.cu drops the schedule for it).
// The causal persistent grid (kDynamic, head_dim 128 and 256) runs 48 /
// 224: at 24 its producer spilled 192-252 bytes, inside the K/V loop (the
// atomicAdd's loop next to decode_tile's 64-bit divisions; ptxas, CUDA
// 13.0), at 40 16-20 bytes once the section order (causal_ticket_tile) came
// in, at 48 none; the consumers fit 224 without spills (head_dim 128's used
// up to R206 at 232, head_dim 256's squeezed from R237 at 240). Head_dim
// 64's three warpgroups spilled 120 bytes at 32 / 160 and 180 at 40 / 152,
// so it keeps one tile per CTA (forward_dynamic_grid).
// Fused LongNet chains (kFused) walk several units and classes per tile: the
// producer keeps the walk's counters, so head_dim <= 128 runs 40 / 232 as
// the scheduled block-sparse kernels do.
template <class Shape, bool kBlockSparse, bool kDynamic = false, bool kFused = false>
struct RegSplit {
  static constexpr bool kScheduled = kBlockSparse && Shape::kHeadDim <= 128;
  static constexpr bool kFusedSplit = kFused && Shape::kHeadDim <= 128;
  // (Head_dim 64 scheduled: 48 / 224 since its producer publishes the tile
  // entries (QSlot::entry_slot): at 40 it spilled 12 bytes; its consumers need far fewer.)
  static constexpr int kProducer = kFusedSplit                           ? 40
                                   : kDynamic                            ? 48
                                   : kScheduled && Shape::kHeadDim == 64 ? 48
                                   : kScheduled                          ? 40
                                                                         : Shape::kProducerRegs;
  static constexpr int kConsumer = kFusedSplit                           ? 232
                                   : kDynamic                            ? 224
                                   : kScheduled && Shape::kHeadDim == 64 ? 224
                                   : kScheduled                          ? 232
                                                                         : Shape::kConsumerRegs;
  static_assert(!kDynamic || Shape::kConsumerWarpgroups == 2, "the causal persistent grid runs two consumer warpgroups");
  static_assert(!kBlockSparse || Shape::kConsumerWarpgroups == 2, "block-sparse runs two consumer warpgroups");
  // setmaxnreg moves registers within the CTA's allocation, which is what
  // ptxas gave each thread at launch (at most 65536 / threads, a multiple
  // of 8: 168 x 384 = 64512 with two consumer warpgroups), not the whole
  // register file: a 32 / 240 split (65536) hung in the consumers'
  // setmaxnreg.inc (H100, 2026-11-28, perf_tests/results/h100-fa3-2026-11-28-absorb).
  static constexpr int kCtaRegisters = 65536 / Shape::kThreads / 8 * 8 * Shape::kThreads;
  static_assert(kProducer * 128 + kConsumer * 128 * Shape::kConsumerWarpgroups <= kCtaRegisters, "register file");
};

// The tile indices this CTA runs, in order, each passed to body: the stride
// idx = blockIdx.x + j gridDim.x, or for a block-sparse plan its schedule
// (tile_schedule.hpp: balanced per-CTA lists; the launch's grid is its CTA
// count). The stride loop is written as before, so dense kernels keep their code.
// body(idx, entry): entry is the schedule's record of the tile, or null.
// kPrefetch: load the next entry before running this tile, so the next tile
// starts without waiting for it (the consumers; the producer runs ahead anyway).
template <bool kScheduled, bool kPrefetch, class Body>
__device__ __forceinline__ void for_each_tile(const ForwardParams& p, Body&& body) {
  if constexpr (kScheduled) {
    if (p.tile_list) {
      const int end = p.tile_offsets[blockIdx.x + 1];
      int j = p.tile_offsets[blockIdx.x];
      TileEntry next{};
      if (kPrefetch && j < end) next = p.tile_list[j];
      for (; j < end; ++j) {
        TileEntry cur;
        if constexpr (kPrefetch) {
          cur = next;
          if (j + 1 < end) next = p.tile_list[j + 1];  // in flight while this tile runs
        } else {
          cur = p.tile_list[j];
        }
        body(std::int64_t(cur.idx), &cur);
      }
      return;
    }
  }
  for (std::int64_t idx = blockIdx.x; idx < p.total_tiles; idx += gridDim.x)
    body(idx, static_cast<const TileEntry*>(nullptr));
}

// The tile for_each_tile hands the body: a block-sparse schedule entry's
// host-decoded start (ForwardParams::entry_decode), else decode_tile. Other
// kernels have no entry, and their code stays decode_tile's.
// kConsumer: the consumers' decode (decode_tile's kFast).
template <class Shape, bool kBlockSparse, bool kConsumer = false>
__device__ __forceinline__ QueryTile start_tile(const ForwardParams& p, std::int64_t idx, const TileEntry* entry) {
  if constexpr (RegSplit<Shape, kBlockSparse>::kScheduled)
    if (entry && p.entry_decode) return decode_entry_tile<Shape::kBlockM>(p, *entry);
  return decode_tile<Shape::kBlockM, Shape::kBlockN, kConsumer>(p, idx, entry);
}

// Causal tiles differ in cost (tile qt of a segment visits qt + 1 key
// blocks), so a static stride over a persistent grid left the busiest CTA
// ~6% above the mean, and one tile per CTA (the hardware's dispatch, which
// balances well) pays a CTA start, Q load and pipeline fill per tile with no
// overlap. Here (FA3's dynamic persistent scheduler) a grid of one CTA per SM
// takes tiles from a counter in device memory (ForwardParams::tile_counter,
// zero at launch): CTA c runs ticket c first, then whatever
// atomicAdd(counter, 1) + gridDim.x returns,
// asked for once the producer has issued the previous tile's last loads (so
// a CTA claims its next tile late, about two key blocks before its
// consumers finish; with the result live across the K/V loop instead, the
// producer spilled). Tickets map to tiles heaviest first within L2-sized
// sections (causal_order.hpp). It publishes each active tile's index with its
// Q (QSlot::tile_slot, before the arrive on q_full), so the consumers learn
// their next tile from the barrier they wait on anyway, and -1 when the
// counter runs past the last tile. The next tile's Q and first K/V blocks
// load while the consumers finish the previous one.
template <class Shape, bool kBlockSparse>
__device__ __forceinline__ void produce_dynamic_tiles(const ForwardArgs& args, char* smem, Barriers bar) {
  std::uint32_t it = 0, tile_iter = 0;
  const std::int32_t total = std::int32_t(args.p.total_tiles);  // < 2^31 - grid (forward_launch.cu)
  for (std::int32_t j = blockIdx.x; j < total; j = atomicAdd(args.p.tile_counter, 1) + std::int32_t(gridDim.x)) {
    const std::int32_t idx = std::int32_t(causal_ticket_tile(std::uint32_t(j), std::uint32_t(args.p.causal_groups),
                                                            std::uint32_t(args.p.causal_section),
                                                            std::uint32_t(args.p.causal_section_tiles)));
    const QueryTile t = decode_tile<Shape::kBlockM, Shape::kBlockN>(args.p, idx);
    if (t.active) {  // windowed causal: tiles whose keys all follow their queries are skipped
      produce<Shape, kBlockSparse, true>(args, t, smem, bar, it, tile_iter, idx);
      it += t.key_blocks;
      ++tile_iter;
    }
  }
  const QSlot<Shape, kBlockSparse, true> q(args.p, bar, tile_iter);
  if (q.use > 0) mbar_wait(q.empty, (q.use - 1) & 1);  // the consumers have read the slot's last index
  *q.tile_slot(smem) = -1;
  mbar_arrive(q.full);
}

// Persistent: a grid of one CTA per SM walks the tiles (idx += gridDim.x), so
// the producer loads the next tile's Q and first K/V blocks while the
// consumers are still finishing the previous tile and writing its output.
// (A snake order over rounds, for causal tiles of unequal cost, made the
// 24-register producer spill 40-160 bytes in every variant, CUDA 13.0, even
// as a stateless index map; so the order stays the plain stride.) Block-
// sparse plans run the plan's balanced per-CTA lists instead (for_each_tile).
// kDropout: a separate instantiation, so the dropout-free kernel keeps its
// registers (the Philox rounds would otherwise cost spills everywhere).
// kBlockSparse: likewise, so dilated branches keep kb * BlockN arithmetic.
// kDynamic: causal launches (produce_dynamic_tiles above), a separate
// instantiation so the non-causal kernels keep their code.
// kDedup: the branches of a LongNet chain (longnet_dedup.hpp; non-causal, no
// dropout, not block-sparse, not windowed), likewise a separate instantiation.
// kFused: a LongNet chain in one launch (longnet_fused_chain.hpp), likewise.
template <class T, class Shape, bool kDropout, bool kBlockSparse, bool kDynamic = false, bool kDedup = false,
          bool kFused = false>
__global__ void __launch_bounds__(Shape::kThreads, 1)
    forward_kernel(const __grid_constant__ ForwardArgs args) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) &
                                       ~std::uintptr_t(1023));
  auto* bars = reinterpret_cast<std::uint64_t*>(smem + Shape::kOffsetBarriers);
  Barriers bar{bars, bars + 1, bars + 2, bars + 2 + Shape::kStages, bars + 2 + 2 * Shape::kStages,
               bars + 2 + 3 * Shape::kStages};
  static_assert(!kBlockSparse || Shape::kBlockM == 128, "the plan's block-sparse counts and schedule are per 128-row tile");
  static_assert(!(kDedup || kFused) || (!kDropout && !kBlockSparse && !kDynamic),
                "LongNet chains: non-causal, no dropout, not block-sparse");
  static_assert(!(kDedup && kFused), "a fused chain is one launch, not a member's");
  const int warpgroup = threadIdx.x / 128;
  if constexpr (QBuffers<Shape, kBlockSparse, kDynamic>::kTwo) {
    if (threadIdx.x == 0) {
      mbar_init(bar.q_full + Shape::kBarriers, 1);
      mbar_init(bar.q_empty + Shape::kBarriers, 128 * Shape::kConsumerWarpgroups);
    }
  }
  if (threadIdx.x == 0) {
    mbar_init(bar.q_full, 1);
    mbar_init(bar.q_empty, 128 * Shape::kConsumerWarpgroups);
    for (int s = 0; s < Shape::kStages; ++s) {
      mbar_init(&bar.k_full[s], 1);
      mbar_init(&bar.v_full[s], 1);
      mbar_init(&bar.k_empty[s], 128 * Shape::kConsumerWarpgroups);
      mbar_init(&bar.v_empty[s], 128 * Shape::kConsumerWarpgroups);
    }
    fence_barrier_init();
  }
  __syncthreads();

  using Regs = RegSplit<Shape, kBlockSparse, kDynamic, kFused>;
  std::uint32_t it = 0, tile_iter = 0;
  if (warpgroup == 0) {
    regs_release<Regs::kProducer>();
    if (threadIdx.x == 0) {
      const int maps = int(args.p.pattern.dilation[args.p.branch]);  // descriptors in use
      for (int phase = 0; phase < maps && phase < kMaxPhases; ++phase) {
        prefetch_tensormap(&args.q[phase]);
        prefetch_tensormap(&args.k[phase]);
        prefetch_tensormap(&args.v[phase]);
      }
      if constexpr (kDynamic) {
        produce_dynamic_tiles<Shape, kBlockSparse>(args, smem, bar);
        return;
      }
      for_each_tile<RegSplit<Shape, kBlockSparse>::kScheduled, false>(args.p, [&](std::int64_t idx, const TileEntry* entry) {
        QueryTile t = [&] {
          if constexpr (kFused) return decode_fused_tile<Shape::kBlockM, Shape::kBlockN>(args.p, idx);
          else return start_tile<Shape, kBlockSparse>(args.p, idx, entry);
        }();
        if constexpr (kDedup) dedup_tile<Shape::kBlockN>(args.p, t);
        if (!t.active) return;
        produce<Shape, kBlockSparse, false, kDedup, kFused>(args, t, smem, bar, it, tile_iter, 0, entry);
        it += t.key_blocks;
        ++tile_iter;
      });
    }
  } else {
    regs_acquire<Regs::kConsumer>();
    if constexpr (kDynamic) {
      for (;; ++tile_iter) {  // the tiles the producer publishes, until it says -1
        const QSlot<Shape, kBlockSparse, true> q(args.p, bar, tile_iter);
        mbar_wait(q.full, q.use & 1);
        // Through a shuffle: the compiler then knows the index, and the tile's
        // key blocks, stages and K/V addresses derived from it, are warp-
        // uniform. Read as a per-thread value, the consumer step grew from
        // 896 to 991 SASS instructions (48 R2UR moving descriptors built in
        // ordinary registers; CUDA 13.0) and ran 20% more instructions in
        // all (ncu, h100-fa3-2026-11-27-causal/run1).
        const std::int32_t idx = __shfl_sync(0xffffffffu, *q.tile_slot(smem), 0);
        if (idx < 0) return;
        const QueryTile t = decode_tile<Shape::kBlockM, Shape::kBlockN, true>(args.p, idx);
        consume<T, Shape, kDropout, kBlockSparse, true>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128, it,
                                                        tile_iter);
        it += t.key_blocks;
      }
    }
    if constexpr (kBlockSparse && QBuffers<Shape, kBlockSparse>::kTwo) {
      if (args.p.tile_list && args.p.entry_decode) {  // the entries the producer publishes (QSlot::entry_slot)
        const int tiles = args.p.tile_offsets[blockIdx.x + 1] - args.p.tile_offsets[blockIdx.x];
        for (int j = 0; j < tiles; ++j) {
          const QSlot<Shape, kBlockSparse> q(args.p, bar, tile_iter);
          mbar_wait(q.full, q.use & 1);
          const QueryTile t = decode_entry_tile<Shape::kBlockM>(args.p, load_entry(q.entry_slot(smem)));
          consume<T, Shape, kDropout, kBlockSparse>(args, t, smem, bar, warpgroup - 1, threadIdx.x % 128, it,
                                                    tile_iter);
          it += t.key_blocks;
          ++tile_iter;
        }
        return;
      }
    }
    for_each_tile<RegSplit<Shape, kBlockSparse>::kScheduled, true>(args.p, [&](std::int64_t idx, const TileEntry* entry) {
      QueryTile t = [&] {
        if constexpr (kFused) return decode_fused_tile<Shape::kBlockM, Shape::kBlockN>(args.p, idx);
        else return start_tile<Shape, kBlockSparse, true>(args.p, idx, entry);
      }();
      if constexpr (kDedup) dedup_tile<Shape::kBlockN>(args.p, t);
      if (!t.active) return;
      consume<T, Shape, kDropout, kBlockSparse, false, kDedup, kFused>(args, t, smem, bar, warpgroup - 1,
                                                                      threadIdx.x % 128, it, tile_iter);
      it += t.key_blocks;
      ++tile_iter;
    });
  }
#endif
}

}  // namespace dilated::cuda_fa3::details
