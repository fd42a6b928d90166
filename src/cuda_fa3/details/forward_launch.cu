// cuda_fa3/details/forward_launch.cu - instantiations and launch of the
// forward kernel for every supported (dtype, head_dim).
#include "cuda_fa3/details/forward_launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda_fa3/details/forward_kernel.cuh"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error("cuda.runtime", std::string("cuda_fa3: ") + what + ": " + cudaGetErrorString(e));
}
}  // namespace

// Head_dim 64 runs 192-row tiles (three consumer warpgroups, tile_shape.hpp):
// H100, bf16, N = 16K, same call: dense 502 vs 422-425 TFLOP/s, causal 473
// vs 399-402, LongNet 1M d64 43.7 vs 49.8 ms (results/h100-fa3-2026-11-27-fwd4).
// DILATED_FA3_D64=m128 (read once per process) restores 128-row tiles for
// comparison. Dropout and block-sparse launches keep 128 rows (block-sparse
// query blocks are multiples of 128; 160 registers leave no room for the
// Philox rounds); so do head dims 128 and 256, where the 64 x head_dim O
// accumulator needs the 240 registers of two warpgroups.
namespace {
bool d64_rows_128() {
  static const bool v = [] {
    const char* e = std::getenv("DILATED_FA3_D64");
    return e && std::string(e) == "m128";
  }();
  return v;
}

// A skipping branch of a LongNet chain (longnet_dedup.hpp) runs 128-row
// tiles: its query tiles must not straddle the previous branch's segments,
// whose kept keys (w_{i-1} / r_i) are multiples of 128, not of 192.
bool three_warpgroups(int head_dim, const ForwardParams& p) {
  return head_dim == 64 && !p.dropout.enabled() && !p.pattern.block_sparse.enabled() && !d64_rows_128() &&
         p.dedup.skip_keys == 0 && !p.chain.active();
}
}  // namespace

int forward_block_m(int head_dim, const ForwardParams& p) {
  return three_warpgroups(head_dim, p) ? 192 : 128;
}

// The causal grid: DILATED_FA3_CAUSAL_GRID=tile one tile per CTA (before
// 2026-11-27), =dynamic1 the persistent grid with one Q buffer; otherwise
// the persistent grid with two Q buffers where they fit (head_dim <= 128),
// so the next tile's Q loads during this one.
namespace {
const std::string& causal_grid_env() {
  static const std::string v = [] {
    const char* e = std::getenv("DILATED_FA3_CAUSAL_GRID");
    return std::string(e ? e : "");
  }();
  return v;
}
}  // namespace

bool forward_wide_causal(bool long_rows) {
  static const std::string keys = [] {
    const char* e = std::getenv("DILATED_FA3_CAUSAL_KEYS");
    return std::string(e ? e : "");
  }();
  if (keys == "176") return true;
  if (keys == "128") return false;
  return long_rows;
}

bool forward_dynamic_grid(int head_dim, const ForwardParams& p, std::int64_t tiles) {
  // Head_dim 64 (three consumer warpgroups) spilled with it (forward_kernel.cuh
  // RegSplit). Tile indices and the counter are 32-bit: the counter ends near tiles + grid.
  return p.causal && head_dim >= 128 && !p.dropout.enabled() && !p.pattern.block_sparse.enabled() &&
         causal_grid_env() != "tile" && tiles < (std::int64_t(1) << 30);
}

namespace {
// The epilogue's options (ForwardParams::merge_prefetch, and wide_stores
// outside block-sparse plans, which set their own), on by default. H100,
// LongNet 1M d128 kernel times (perf_tests/results/h100-fa3-2026-11-27-epilogue):
// the merging branches 1-4 5% faster with the prefetch, branch 0 4% with
// 16-byte stores. For comparison, DILATED_FA3_EPILOGUE (read once per
// process): =old neither (the epilogue before them), =noprefetch / =narrow
// without one.
struct EpilogueOptions {
  bool merge_prefetch = true, wide_stores = true;
};
const EpilogueOptions& epilogue_options() {
  static const EpilogueOptions v = [] {
    EpilogueOptions o;
    const char* e = std::getenv("DILATED_FA3_EPILOGUE");
    const std::string s = e ? e : "";
    if (s == "old" || s == "noprefetch") o.merge_prefetch = false;
    if (s == "old" || s == "narrow") o.wide_stores = false;
    return o;
  }();
  return v;
}

template <class T, class Shape, bool kDropout, bool kBlockSparse, bool kDynamic = false, bool kDedup = false,
          bool kFused = false>
void launch_kernel(const ForwardArgs& args, std::int64_t grid, cudaStream_t stream) {
  auto* kernel = &forward_kernel<T, Shape, kDropout, kBlockSparse, kDynamic, kDedup, kFused>;
  constexpr int kSmemBase = QBuffers<Shape, kBlockSparse, kDynamic>::kSmemBytes;  // Shape's, or with a second Q buffer
  // A merging launch stages the old rows after everything else where they fit (consume's kMergeStage).
  constexpr bool kStage = kMergeStage<Shape, kDropout, kBlockSparse, kDynamic>;
  constexpr int kSmemMax = kStage ? KernelMergeStage<Shape, kBlockSparse, kDynamic>::kSmemBytes : kSmemBase;
  static std::once_flag once;  // per instantiation: raise the shared-memory limit
  std::call_once(once, [&] {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemMax),
          "cudaFuncSetAttribute");
  });
  ForwardArgs a = args;
  a.p.merge_prefetch = epilogue_options().merge_prefetch;
  if (!kBlockSparse) a.p.wide_stores = epilogue_options().wide_stores;
  // The lazy softmax (softmax.cuh lazy_probabilities), on by default;
  // DILATED_FA3_SOFTMAX=exact: the running max at every block, as before.
  static const bool lazy_softmax = [] {
    const char* e = std::getenv("DILATED_FA3_SOFTMAX");
    return !(e && std::string(e) == "exact");
  }();
  a.p.lazy_softmax = lazy_softmax;
  const int smem = kStage && a.p.merge && a.p.merge_prefetch ? kSmemMax : kSmemBase;
  kernel<<<dim3(unsigned(grid)), dim3(Shape::kThreads), smem, stream>>>(a);
  check(cudaGetLastError(), "forward kernel launch");
}
}  // namespace

template <class T, int HeadDim, int BlockN>
void launch_forward_branch(const ForwardArgs& args, std::int64_t tiles, cudaStream_t stream) {
  using Shape = TileShape<HeadDim, BlockN>;
  const bool block_sparse = args.p.pattern.block_sparse.enabled();
  if (block_sparse && (args.p.dropout.enabled() || BlockN != kDefaultBlockN<HeadDim>))
    throw Error("cuda.unsupported", "cuda_fa3: block-sparse forward runs without dropout and "
                                    "with the default key block only");
  // Persistent grid of one CTA per SM (a tile needs most of an SM's shared
  // memory and registers, so only one fits anyway): the producer runs ahead
  // into the next tile. Causal tiles differ in cost, and the hardware's
  // dynamic block dispatch balances them better than a static stride
  // (measured on the H100: causal d128 559 vs 516 TFLOP/s), so causal runs
  // one tile per CTA - or, head_dim 128/256 without dropout, a persistent
  // grid that takes tiles from a counter in device memory (args.p.tile_counter;
  // forward_kernel.cuh produce_dynamic_tiles): causal d128 615 vs 592-596,
  // d256 706 vs 659 (H100, results/h100-fa3-2026-11-27-causal/run2).
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "SM count");
  // Block-sparse tiles differ in cost too (their rows list different numbers
  // of key blocks), but do few blocks each (~13 at 90% sparsity and N = 16K),
  // so the persistent grid's overlap of one tile's prologue with the previous
  // epilogue matters more (H100, 2026-11-27, one tile per CTA: 2.18x dense x
  // density at 16K). The plan hands them out in a balanced schedule
  // (tile_schedule.hpp), causal or not, on its own grid, and the kernel
  // loads the next tile's Q into a second buffer (forward_kernel.cuh
  // QBuffers); head_dim <= 128 only.
  // For comparison: DILATED_FA3_BLOCK_SPARSE_GRID=stride restores the grid
  // before the schedule (the stride; causal: one tile per CTA), =tile one tile
  // per CTA; DILATED_FA3_BLOCK_SPARSE_Q=1 one Q buffer;
  // DILATED_FA3_BLOCK_SPARSE_STORES=narrow store_rows' 4-byte stores.
  static const std::string bs_grid = [] {
    const char* e = std::getenv("DILATED_FA3_BLOCK_SPARSE_GRID");
    return std::string(e ? e : "");
  }();
  static const bool bs_one_q = [] {
    const char* e = std::getenv("DILATED_FA3_BLOCK_SPARSE_Q");
    return e && std::string(e) == "1";
  }();
  static const bool bs_narrow = [] {
    const char* e = std::getenv("DILATED_FA3_BLOCK_SPARSE_STORES");
    return e && std::string(e) == "narrow";
  }();
  // DILATED_FA3_BS=old: tiles start with decode_tile as before the
  // schedule's host-decoded entries (ForwardParams::entry_decode).
  static const bool bs_old_decode = [] {
    const char* e = std::getenv("DILATED_FA3_BS");
    return e && std::string(e) == "old";
  }();
  // Head_dim 256 kernels walk the stride (forward_kernel.cuh RegSplit).
  const bool unscheduled = bs_grid == "stride" || bs_grid == "tile" || HeadDim > 128;
  if (block_sparse && ((bs_one_q && args.p.q_buffers != 1) || (unscheduled && args.p.tile_list) ||
                       (bs_narrow && args.p.wide_stores) || (bs_old_decode && args.p.entry_decode))) {
    ForwardArgs a = args;
    if (bs_one_q) a.p.q_buffers = 1;
    if (unscheduled) a.p.tile_list = nullptr;
    if (bs_narrow) a.p.wide_stores = false;
    if (bs_old_decode) a.p.entry_decode = false;
    launch_forward_branch<T, HeadDim, BlockN>(a, tiles, stream);
    return;
  }
  // Testing: DILATED_FA3_MAX_CTAS=n caps the persistent grids (strided, and
  // the causal tile counter's; the block-sparse schedule's when the plan
  // builds it, block_sparse_device.hpp) at n CTAs, so the float64 tests' small
  // problems run many tiles per CTA (the cross-tile paths: the K/V ring's
  // phases, the turns, the merge staging's reuse) as the large ones do.
  static const int max_ctas = [] {
    const char* e = std::getenv("DILATED_FA3_MAX_CTAS");
    return e ? std::atoi(e) : 0;
  }();
  if (max_ctas > 0 && max_ctas < sms) sms = max_ctas;
  if (args.p.tile_counter) {  // causal: the persistent grid with the tile counter (forward_dynamic_grid)
    ForwardArgs a = args;
    a.p.q_buffers = causal_grid_env() == "dynamic1" ? 1 : 2;
    // DILATED_FA3_CAUSAL_CTAS=n (tests): at most n CTAs, so small problems
    // run many tiles per CTA too.
    static const std::int64_t cap = [] {
      const char* e = std::getenv("DILATED_FA3_CAUSAL_CTAS");
      return e ? std::atoll(e) : 0;
    }();
    std::int64_t grid = tiles < sms ? tiles : sms;
    if (cap > 0 && grid > cap) grid = cap;
    // The order's sections (causal_order.hpp): as many (batch, head,
    // segment) groups as keep their K and V within 32 MB of L2 (FA3's
    // budget; the H100 has 50 MB), at least one.
    // DILATED_FA3_CAUSAL_SECTION=n: n groups per section (comparisons; 0 = all).
    static const long long section_env = [] {
      const char* e = std::getenv("DILATED_FA3_CAUSAL_SECTION");
      return e ? std::atoll(e) : -1ll;
    }();
    const std::int64_t groups = std::int64_t(args.p.batch) * args.p.heads * args.p.num_segments;
    const std::int64_t kv_bytes = 2 * args.p.tiles_per_segment * Shape::kBlockM * HeadDim * std::int64_t(sizeof(T));
    std::int64_t section = section_env > 0    ? section_env
                           : section_env == 0 ? groups
                                              : (std::int64_t(32) << 20) / kv_bytes;
    section = std::max<std::int64_t>(1, std::min(section, groups));
    a.p.causal_groups = std::int32_t(groups);
    a.p.causal_section = std::int32_t(section);
    a.p.causal_section_tiles = std::int32_t(section * args.p.tiles_per_segment);
    // Head_dim 128 and 256, with the default key block or (128) 176 keys.
    if constexpr (HeadDim >= 128) {
      launch_kernel<T, Shape, false, false, true>(a, grid, stream);
      return;
    }
    throw Error("cuda.unsupported", "cuda_fa3: the causal persistent grid runs head_dim 128/256");
  }
  const bool one_tile_per_cta = (args.p.causal && !args.p.tile_list) || (block_sparse && bs_grid == "tile");
  const std::int64_t grid = args.p.tile_list ? args.p.order_ctas
                            : one_tile_per_cta || tiles < sms ? tiles
                                                              : sms;
  if (args.p.chain.active()) {
    // A fused LongNet chain (plan.cu, longnet_fused_chain.hpp): 128-row tiles, the default key block.
    if (args.p.causal || args.p.windowed || args.p.dropout.enabled() || block_sparse ||
        BlockN != kDefaultBlockN<HeadDim>)
      throw Error("cuda.internal", "cuda_fa3: fused LongNet chain launch on a causal, windowed or 176-key branch");
    if constexpr (BlockN == kDefaultBlockN<HeadDim>) launch_kernel<T, Shape, false, false, false, false, true>(args, grid, stream);
  } else if (args.p.dropout.enabled()) {
    launch_kernel<T, Shape, true, false>(args, grid, stream);
  } else if (args.p.dedup.active()) {
    // A LongNet chain branch (plan.cu, longnet_dedup.hpp): the default key block only.
    if (args.p.causal || args.p.windowed || BlockN != kDefaultBlockN<HeadDim>)
      throw Error("cuda.internal", "cuda_fa3: LongNet chain launch on a causal, windowed or 176-key branch");
    if constexpr (BlockN == kDefaultBlockN<HeadDim>) {
      if (three_warpgroups(HeadDim, args.p)) {
        if constexpr (HeadDim == 64)
          launch_kernel<T, TileShape<64, BlockN, 3>, false, false, false, true>(args, grid, stream);
      } else {
        launch_kernel<T, Shape, false, false, false, true>(args, grid, stream);
      }
    }
  } else if (block_sparse) {
    // Only the default key block: plan.cu never picks 176 for block-sparse.
    if constexpr (BlockN == kDefaultBlockN<HeadDim>) launch_kernel<T, Shape, false, true>(args, grid, stream);
  } else if (three_warpgroups(HeadDim, args.p)) {  // plan.cu counted 192-row tiles (forward_block_m)
    if constexpr (HeadDim == 64) launch_kernel<T, TileShape<64, BlockN, 3>, false, false>(args, grid, stream);
  } else {
    launch_kernel<T, Shape, false, false>(args, grid, stream);
  }
}

// One thread per 16 bytes of a row (head_dim / 8 of them; rows are 16-byte
// aligned, plan.cu check_tensor), so the fill runs at store bandwidth: the
// element-wise form with 64-bit divisions per element took 182 us for
// 16K x 16 x 128 bf16 on the H100 (0.36 TB/s; ncu, 2026-11-27,
// perf_tests/results/h100-fa3-2026-11-27-fill), as long as the causal
// block-sparse forward it preceded. Rows: the whole [batch, seq, heads]
// range, or 128 per listed tile (tiles != nullptr).
template <class T>
__global__ void fill_empty_kernel(ForwardParams p, std::int64_t head_dim, const EmptyTile* tiles, std::int64_t rows) {
  static_assert(sizeof(T) == 2, "16-bit outputs: 8 elements per 16-byte store");
  const std::int64_t chunks = head_dim / 8;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < rows * chunks;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % chunks, row = i / chunks;
    std::int64_t b, s, h;
    if (tiles) {
      const EmptyTile t = tiles[row / 128];
      b = t.b;
      h = t.h;
      s = t.q_begin + row % 128;
      if (s >= p.seq_len) continue;
    } else {
      h = row % p.heads;
      s = (row / p.heads) % p.seq_len;
      b = row / (std::int64_t(p.heads) * p.seq_len);
    }
    T* o = static_cast<T*>(p.out) + b * p.out_stride_b + s * p.out_stride_s + h * p.out_stride_h;
    reinterpret_cast<uint4*>(o)[c] = make_uint4(0u, 0u, 0u, 0u);  // +0.0 in bf16 and fp16
    if (c == 0) p.lse[b * p.lse_stride_b + h * p.lse_stride_h + s * p.lse_stride_s] = -INFINITY;
  }
}

template <class T>
void launch_fill_empty(const ForwardParams& p, std::int64_t head_dim, cudaStream_t stream, const EmptyTile* tiles,
                       std::int64_t count) {
  const std::int64_t rows = tiles ? 128 * count : std::int64_t(p.batch) * p.seq_len * p.heads;
  if (rows <= 0) return;
  const std::int64_t threads = rows * (head_dim / 8);
  const std::int64_t blocks = std::min<std::int64_t>((threads + 255) / 256, 132 * 16);
  fill_empty_kernel<T><<<unsigned(blocks), 256, 0, stream>>>(p, head_dim, tiles, rows);
  check(cudaGetLastError(), "fill kernel launch");
}

#define DILATED_FA3_INSTANTIATE(T, D, N) \
  template void launch_forward_branch<T, D, N>(const ForwardArgs&, std::int64_t, cudaStream_t);
DILATED_FA3_INSTANTIATE(__nv_bfloat16, 64, 128)
DILATED_FA3_INSTANTIATE(__nv_bfloat16, 128, 128)
DILATED_FA3_INSTANTIATE(__nv_bfloat16, 128, 176)
DILATED_FA3_INSTANTIATE(__nv_bfloat16, 256, 64)
DILATED_FA3_INSTANTIATE(__half, 64, 128)
DILATED_FA3_INSTANTIATE(__half, 128, 128)
DILATED_FA3_INSTANTIATE(__half, 128, 176)
DILATED_FA3_INSTANTIATE(__half, 256, 64)
#undef DILATED_FA3_INSTANTIATE
template void launch_fill_empty<__nv_bfloat16>(const ForwardParams&, std::int64_t, cudaStream_t, const EmptyTile*,
                                               std::int64_t);
template void launch_fill_empty<__half>(const ForwardParams&, std::int64_t, cudaStream_t, const EmptyTile*,
                                        std::int64_t);

}  // namespace dilated::cuda_fa3::details
