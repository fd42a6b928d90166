// cuda_fa3/plan.cu - the backend's Plan: support query (runtime detection),
// argument checks, and the per-branch dispatch over (dtype, head_dim).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda_fa3/details/backward2_launch.cuh"
#include "cuda_fa3/details/backward_launch.cuh"
#include "cuda_fa3/details/block_sparse_device.hpp"
#include "cuda_fa3/details/forward_launch.cuh"
#include "cuda_fa3/details/kept_rows.cuh"
#include "cuda_fa3/details/tensor_maps.hpp"
#include "cuda_fa3/details/tile_shape.hpp"
#include "cuda_fa3/details/workspace.hpp"
#include "cuda_fa3/fa3.hpp"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3 {

const char* to_string(DType t) { return t == DType::bf16 ? "bf16" : "fp16"; }

bool compiled_in() { return true; }

Support query_support(const AttentionConfig& config, const ProblemShape& shape, DType,
                      int device) {
  auto no = [](std::string why) { return Support{false, std::move(why)}; };
  if (device < 0 && cudaGetDevice(&device) != cudaSuccess) return no("no CUDA device");
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return no("cannot query the CUDA device");
  if (prop.major != 9)
    return no("compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
              " is not 9.x (the kernels use sm_90a wgmma and TMA)");
  if (shape.head_dim != 64 && shape.head_dim != 128 && shape.head_dim != 256)
    return no("head_dim " + std::to_string(shape.head_dim) + " is not 64, 128 or 256");
  if (config.block_sparse) {
    const std::string why = details::block_sparse_unsupported(config);
    if (!why.empty()) return no(why);
  }
  if (!(effective_softmax_scale(config, shape.head_dim) > 0.0))
    return no("softmax scale must be positive (the kernel takes the row max before scaling)");
  for (const Branch& b : config.branches)
    if (b.dilation > details::kMaxPhases)
      return no("dilation " + std::to_string(b.dilation) + " exceeds " +
                std::to_string(details::kMaxPhases) + " (one TMA descriptor per residue)");
  if (shape.batch > (1 << 30) || shape.heads > (1 << 30))
    return no("batch or heads beyond 2^30");
  return Support{true, "cuda_fa3: sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                           ", " + std::to_string(shape.head_dim) + "-wide heads"};
}

Plan::Plan(AttentionConfig config, ProblemShape shape, DType dtype, int device)
    : config_(std::move(config)), shape_(shape), dtype_(dtype) {
  validate(config_, shape_);
  pattern_ = make_pattern(config_, shape_);
  support_ = query_support(config_, shape_, dtype_, device);
  backward_support_ = support_;
  // Block-sparse: forward and (v1) backward walk the rule's runs, read from
  // a device copy of the layout.
  if (config_.block_sparse && support_.ok)
    block_sparse_storage_ = details::upload_block_sparse(
        *config_.block_sparse, shape_.seq_len, config_.causal,
        shape_.head_dim <= 128 ? 128 : 64 /* kDefaultBlockN */, shape_.batch, shape_.heads, device,
        &pattern_.block_sparse);
}

namespace {

template <class Tn>
void check_tensor(const char* name, const Tn& t, const ProblemShape& s) {
  auto fail = [&](const std::string& what) {
    throw Error("cuda.tensor_layout", std::string("cuda_fa3: ") + name + " " + what);
  };
  if (!t.data) fail("is null");
  if (t.stride_d != 1) fail("must have a contiguous head_dim (stride_d = " + std::to_string(t.stride_d) + ")");
  if (reinterpret_cast<std::uintptr_t>(t.data) % 16)
    fail("must be 16-byte aligned (TMA), got address % 16 = " +
         std::to_string(reinterpret_cast<std::uintptr_t>(t.data) % 16));
  const std::int64_t strides[3] = {t.stride_b, t.stride_s, t.stride_h};
  for (std::int64_t st : strides)
    if (st % 8 != 0 || st <= 0)
      fail("strides must be positive multiples of 8 elements (16 bytes); got " + std::to_string(st));
  (void)s;
}

// Which positions the query-side (q, out, lse) and key-side (k, v) tensors
// of a launch hold; forward() uses the whole sequence for both.
struct Window {
  std::int64_t q_begin, q_len, k_begin, k_len;
};

// Encodes one TMA descriptor per residue of a window tensor of `rows` rows.
// A residue with no row in the window (rows < r) is never loaded from (no
// kept position lies there) but is still prefetched: it gets phase 0's.
template <class Tn>
void encode_window_maps(CUtensorMap* maps, DType dtype, const Tn& t, const ProblemShape& s, std::int64_t rows,
                        std::int64_t r, int box_rows) {
  for (std::int64_t phase = 0; phase < r; ++phase) {
    if (phase >= rows) {
      maps[phase] = maps[0];
      continue;
    }
    details::encode_dilated_map(&maps[phase], dtype, t.data, t, s.batch, rows, s.heads, s.head_dim, r, phase,
                                box_rows);
  }
}

// Returns a workspace block in stream order when the launch is done (or threw).
struct CounterGuard {
  std::int32_t* p = nullptr;
  cudaStream_t stream = nullptr;
  CounterGuard() = default;
  CounterGuard(const CounterGuard&) = delete;
  CounterGuard& operator=(const CounterGuard&) = delete;
  ~CounterGuard() {
    if (p) details::workspace_free(p, stream);
  }
};

// Tile-size heuristic: 176 keys per block for long head_dim 128 rows
// (>= 8192 keys, where the ragged last block costs < 2%); causal too where
// forward_wide_causal says so (forward_launch.cuh).
bool wide_keys(const PatternParams& pat, const ProblemShape& s, bool causal, int i, std::int64_t k_len) {
  const bool long_rows = pat.max_kept_in_window(i, k_len) >= 8192;
  return s.head_dim == 128 && !pat.block_sparse.enabled() &&  // block-sparse: 128-key blocks only
         (causal ? details::forward_wide_causal(long_rows) : long_rows);
}

// One branch on one window pair, merged into (out, lse) when args.p.merge.
// dedup: its part of a LongNet chain (whole-sequence launches only).
template <class T>
void launch_branch(const details::ForwardParams& base, const PatternParams& pat, const ProblemShape& s,
                   DType dtype, int i, const Window& w, bool merge, const Tensor& q, const Tensor& k,
                   const Tensor& v, cudaStream_t stream, const details::DedupParams& dedup = {}) {
  details::ForwardArgs args{};
  args.p = base;
  args.p.branch = i;
  args.p.merge = merge;
  args.p.dedup = dedup;
  args.p.q_window_begin = w.q_begin;
  args.p.q_window_len = w.q_len;
  args.p.k_window_begin = w.k_begin;
  args.p.k_window_len = w.k_len;
  args.p.windowed = !(w.q_begin == 0 && w.q_len == s.seq_len && w.k_begin == 0 && w.k_len == s.seq_len);
  // Only the segments both windows touch (all of them for the whole sequence).
  const std::int64_t seg = pat.segment_length[i];
  const std::int64_t first = std::max(w.q_begin, w.k_begin) / seg;
  const std::int64_t last = std::min(w.q_begin + w.q_len, w.k_begin + w.k_len) - 1;
  if (last < first * seg) return;  // no shared segment
  args.p.first_segment = first;
  args.p.num_segments = last / seg - first + 1;
  const int block_m = details::forward_block_m(int(s.head_dim), args.p);  // 192 or 128 rows
  const bool wide = wide_keys(pat, s, base.causal, i, w.k_len);
  const int block_n = wide ? 176 : s.head_dim <= 128 ? 128 : 64;
  args.p.tiles_per_segment = (pat.max_kept_in_window(i, w.q_len) + block_m - 1) / block_m;
  const std::int64_t r = pat.dilation[i];
  encode_window_maps(args.q, dtype, q, s, w.q_len, r, block_m);
  encode_window_maps(args.k, dtype, k, s, w.k_len, r, block_n);
  encode_window_maps(args.v, dtype, v, s, w.k_len, r, block_n);
  const std::int64_t tiles = s.batch * s.heads * args.p.num_segments * args.p.tiles_per_segment;
  if (tiles <= 0) return;
  args.p.total_tiles = tiles;
  // decode_tile without 64-bit divisions (fast_decode.hpp) where every number fits 31 bits.
  // DILATED_FA3_DECODE=old (read once per process) keeps the 64-bit decode, for comparison.
  static const bool old_decode = [] {
    const char* e = std::getenv("DILATED_FA3_DECODE");
    return e && std::string(e) == "old";
  }();
  constexpr std::int64_t k31 = std::int64_t(1) << 31;
  if (!old_decode && !args.p.windowed && pat.head_mode == 0 && !pat.block_sparse.enabled() &&
      s.seq_len + r < k31 && tiles < k31) {
    details::TileDivisors& d = args.p.decode;
    d.tiles = details::FastDiv::make(std::uint32_t(args.p.tiles_per_segment));
    d.groups = details::FastDiv::make(std::uint32_t(s.batch * s.heads * args.p.num_segments));
    d.segments = details::FastDiv::make(std::uint32_t(args.p.num_segments));
    d.heads = details::FastDiv::make(std::uint32_t(s.heads));
    d.dilation = details::FastDiv::make(std::uint32_t(r));
    d.enabled = true;
  }
  // Causal: the persistent grid's tile counter (forward_kernel.cuh
  // produce_dynamic_tiles), 4 bytes from the workspace pool per launch and
  // zeroed in stream order, so calls of one plan on several streams never
  // share one (a plan-owned counter would make them race).
  CounterGuard counter;
  if (details::forward_dynamic_grid(int(s.head_dim), args.p, tiles)) {
    counter.stream = stream;
    counter.p = static_cast<std::int32_t*>(details::workspace_alloc(sizeof(std::int32_t), stream));
    const cudaError_t e = cudaMemsetAsync(counter.p, 0, sizeof(std::int32_t), stream);
    if (e != cudaSuccess)
      throw Error("cuda.runtime", std::string("cuda_fa3: cudaMemsetAsync(tile counter): ") + cudaGetErrorString(e));
    args.p.tile_counter = counter.p;
  }
  switch (s.head_dim) {
    case 64: details::launch_forward_branch<T, 64, 128>(args, tiles, stream); break;
    case 128:
      if (wide) details::launch_forward_branch<T, 128, 176>(args, tiles, stream);
      else details::launch_forward_branch<T, 128, 128>(args, tiles, stream);
      break;
    case 256: details::launch_forward_branch<T, 256, 64>(args, tiles, stream); break;
    default: break;  // excluded by query_support
  }
}

// A LongNet chain in one launch (details/longnet_fused_chain.hpp), whole
// sequence: descriptors of the last member's dilation, 128-row class tiles.
template <class T>
void launch_fused_chain(const details::ForwardParams& base, const PatternParams& pat, const ProblemShape& s,
                        DType dtype, const details::FusedChainParams& f, bool merge, const Tensor& q, const Tensor& k,
                        const Tensor& v, cudaStream_t stream) {
  details::ForwardArgs args{};
  args.p = base;
  args.p.branch = f.first_branch + f.members - 1;  // the descriptors' stride: r_L
  args.p.merge = merge;
  args.p.chain = f;
  args.p.q_window_begin = args.p.k_window_begin = 0;
  args.p.q_window_len = args.p.k_window_len = s.seq_len;
  args.p.windowed = false;
  args.p.first_segment = 0;
  args.p.num_segments = f.units;
  args.p.tiles_per_segment = f.tiles_per_unit;
  const std::int64_t r = pat.dilation[args.p.branch];
  const int block_n = s.head_dim <= 128 ? 128 : 64;
  encode_window_maps(args.q, dtype, q, s, s.seq_len, r, details::kFusedTileRows);
  encode_window_maps(args.k, dtype, k, s, s.seq_len, r, block_n);
  encode_window_maps(args.v, dtype, v, s, s.seq_len, r, block_n);
  const std::int64_t tiles = s.batch * s.heads * std::int64_t(f.units) * f.tiles_per_unit;
  args.p.total_tiles = tiles;
  switch (s.head_dim) {
    case 64: details::launch_forward_branch<T, 64, 128>(args, tiles, stream); break;
    case 128: details::launch_forward_branch<T, 128, 128>(args, tiles, stream); break;
    case 256: details::launch_forward_branch<T, 256, 64>(args, tiles, stream); break;
    default: break;  // excluded by query_support
  }
}

template <class T>
void run_branches(const details::ForwardParams& base, const PatternParams& pat, const ProblemShape& s, DType dtype,
                  const Tensor& q, const Tensor& k, const Tensor& v, cudaStream_t stream,
                  const details::BlockSparseDevice* bs = nullptr) {
  // The first branch may write rows outright only if it writes every row:
  // LongNet mode with dilation 1. Otherwise start from the merge identity.
  // A block-sparse pattern covers every row unless some rows attend to
  // nothing (whole query tiles with no visible block: the kernel skips
  // them); the fill then writes only those tiles' rows, from the plan's list.
  const bool block_sparse = pat.block_sparse.enabled();
  const bool first_covers_all = pat.head_mode == 0 && pat.dilation[0] == 1 &&
                                (!block_sparse || pat.block_sparse.rows_all_attend);
  if (!first_covers_all) {
    if (block_sparse && bs && bs->empty_listed)
      details::launch_fill_empty<T>(base, s.head_dim, stream, bs->empty_tiles, bs->empty_count);
    else
      details::launch_fill_empty<T>(base, s.head_dim, stream);
  }
  const Window whole{0, s.seq_len, 0, s.seq_len};
  // LongNet chains (details/longnet_dedup.hpp): nested branches skip the keys
  // an earlier branch of their chain counts, which weights them instead.
  // Eligible chains run as one launch (details/longnet_fused_chain.hpp).
  // H100, LongNet 1M x 16, same binary, alternating
  // (perf_tests/results/h100-fa3-2026-11-27-fused): d128 51.2-51.3 vs
  // 55.7-55.8 ms one launch per member, d256 91.4 vs 95.4; head_dim 64
  // 36.3-36.5 either way (its per-member chain runs 192-row tiles in branch
  // 0, three consumer warpgroups; fused tiles are 128 rows of one class).
  // For comparison, DILATED_FA3_LONGNET (read once per process): =dup visits
  // every branch's keys as before the chains, =chain runs a chain one launch
  // per member.
  static const std::string longnet_env = [] {
    const char* e = std::getenv("DILATED_FA3_LONGNET");
    return std::string(e ? e : "");
  }();
  const bool dup = longnet_env == "dup";
  details::DedupParams dedup[kMaxBranches];
  bool default_keys[kMaxBranches] = {};
  for (int i = 0; i < pat.num_branches; ++i) default_keys[i] = !wide_keys(pat, s, base.causal, i, s.seq_len);
  details::longnet_dedup_plan(pat, !dup && !base.causal && !base.dropout.enabled() && !block_sparse, default_keys,
                              dedup);
  for (int i = 0; i < pat.num_branches; ++i) {
    // Block-sparse (one branch): a tile with any visible block gives every
    // one of its rows a key (blocks are 128-multiples, so a causally clipped
    // run still starts at or before the tile's first row), so its rows are
    // written outright; the fill above covers the skipped tiles. No merge read.
    const bool merge = i > 0 || (!first_covers_all && !block_sparse);
    if (!dup && longnet_env != "chain") {
      const details::FusedChainParams f = details::fused_chain_plan(pat, dedup, i, s.batch, s.heads);
      if (f.active()) {
        launch_fused_chain<T>(base, pat, s, dtype, f, merge, q, k, v, stream);
        i += f.members - 1;
        continue;
      }
    }
    launch_branch<T>(base, pat, s, dtype, i, whole, merge, q, k, v, stream, dedup[i]);
  }
}

// The forward's launch parameters shared by all branches and windows.
details::ForwardParams forward_base(const AttentionConfig& config, const ProblemShape& shape,
                                    const PatternParams& pattern, const MutableTensor& out,
                                    const LseTensor& lse) {
  details::ForwardParams base{};
  base.pattern = pattern;
  base.batch = int(shape.batch);
  base.heads = int(shape.heads);
  base.seq_len = shape.seq_len;
  base.scale_log2 = float(effective_softmax_scale(config, shape.head_dim) * 1.4426950408889634);
  base.output_scale = float(pattern.output_scale());
  base.causal = config.causal;
  base.dropout = make_dropout(config.dropout_p, config.dropout_seed);
  base.keep_scale = float(base.dropout.keep_scale);
  base.out = out.data;
  base.out_stride_b = out.stride_b;
  base.out_stride_s = out.stride_s;
  base.out_stride_h = out.stride_h;
  base.lse = lse.data;
  base.lse_stride_b = lse.stride_b;
  base.lse_stride_h = lse.stride_h;
  base.lse_stride_s = lse.stride_s;
  return base;
}

}  // namespace

void Plan::forward(Tensor q, Tensor k, Tensor v, MutableTensor out, LseTensor lse,
                   cudaStream_t stream) const {
  if (!support_.ok) throw Error("cuda.unsupported", "cuda_fa3 cannot run this problem: " + support_.reason);
  check_tensor("q", q, shape_);
  check_tensor("k", k, shape_);
  check_tensor("v", v, shape_);
  check_tensor("out", out, shape_);
  if (!lse.data) throw Error("cuda.tensor_layout", "cuda_fa3: lse is null");
  if (out.data == q.data || out.data == k.data || out.data == v.data)
    throw Error("cuda.aliasing", "cuda_fa3: out must not alias q, k or v");

  details::ForwardParams base = forward_base(config_, shape_, pattern_, out, lse);
  // Block-sparse: the per-tile key block counts and the tile schedule.
  const auto* bs = static_cast<const details::BlockSparseDevice*>(block_sparse_storage_.get());
  if (config_.block_sparse) {
    const auto* d = bs;
    base.tile_blocks = d->tile_blocks;
    base.tile_offsets = d->tile_offsets;
    base.tile_list = d->tile_list;
    base.order_ctas = d->order_ctas;
    base.q_buffers = 2;
    base.wide_stores = true;
    base.entry_decode = true;  // tiles start from the schedule's host-decoded entries
  }
  if (dtype_ == DType::bf16)
    run_branches<__nv_bfloat16>(base, pattern_, shape_, dtype_, q, k, v, stream, bs);
  else
    run_branches<__half>(base, pattern_, shape_, dtype_, q, k, v, stream, bs);
}

Support Plan::window_support(bool backward) const {
  if (!support_.ok) return support_;
  if (backward && !backward_support_.ok) return backward_support_;
  // check_window_call's plan-wide rules (it throws with their own codes).
  if (config_.block_sparse)
    return Support{false, "windowed calls (sequence parallelism) do not support block-sparse plans"};
  if (shape_.seq_len >= (std::int64_t(1) << 31))
    return Support{false, "cuda_fa3 windowed calls need a sequence shorter than 2^31"};
  return support_;
}

void Plan::check_window_call(int branch, std::int64_t q_begin, std::int64_t q_len, std::int64_t k_begin,
                             std::int64_t k_len) const {
  if (!support_.ok) throw Error("cuda.unsupported", "cuda_fa3 cannot run this problem: " + support_.reason);
  if (config_.block_sparse)
    throw Error("window.block_sparse",
                "windowed calls (sequence parallelism) do not support block-sparse plans; "
                "call forward/backward on the whole sequence");
  if (branch < 0 || branch >= pattern_.num_branches)
    throw Error("window.branch", "branch " + std::to_string(branch) + " is not one of the config's " +
                                     std::to_string(pattern_.num_branches) + " branches");
  if (shape_.seq_len >= (std::int64_t(1) << 31))  // the kernels' window arithmetic is 32-bit
    throw Error("cuda.unsupported", "cuda_fa3 windowed calls need a sequence shorter than 2^31");
  const std::int64_t begins[2] = {q_begin, k_begin}, lens[2] = {q_len, k_len};
  for (int i = 0; i < 2; ++i)
    if (begins[i] < 0 || lens[i] < 1 || begins[i] > shape_.seq_len - lens[i])
      throw Error("window.range", std::string(i == 0 ? "the query" : "the key") + " window [" +
                                      std::to_string(begins[i]) + ", " + std::to_string(begins[i] + lens[i]) +
                                      ") is outside the plan's sequence [0, " +
                                      std::to_string(shape_.seq_len) + ")");
}

void Plan::forward_window(int branch, std::int64_t q_begin, std::int64_t q_len, Tensor q, MutableTensor out,
                          LseTensor lse, std::int64_t k_begin, std::int64_t k_len, Tensor k, Tensor v,
                          cudaStream_t stream) const {
  check_window_call(branch, q_begin, q_len, k_begin, k_len);
  check_tensor("q", q, shape_);
  check_tensor("k", k, shape_);
  check_tensor("v", v, shape_);
  check_tensor("out", out, shape_);
  if (!lse.data) throw Error("cuda.tensor_layout", "cuda_fa3: lse is null");
  if (out.data == q.data || out.data == k.data || out.data == v.data)
    throw Error("cuda.aliasing", "cuda_fa3: out must not alias q, k or v");
  const details::ForwardParams base = forward_base(config_, shape_, pattern_, out, lse);
  const Window w{q_begin, q_len, k_begin, k_len};
  if (dtype_ == DType::bf16)
    launch_branch<__nv_bfloat16>(base, pattern_, shape_, dtype_, branch, w, true, q, k, v, stream);
  else
    launch_branch<__half>(base, pattern_, shape_, dtype_, branch, w, true, q, k, v, stream);
}

namespace {

// The backward's launch parameters shared by all branches and windows;
// `delta` (any strides) is rowsum(dout * out) of the query rows.
details::BackwardParams backward_base(const AttentionConfig& config, const ProblemShape& s,
                                      const PatternParams& pat, const LseTensor& lse, const LseTensor& delta) {
  details::BackwardParams base{};
  base.pattern = pat;
  base.batch = int(s.batch);
  base.heads = int(s.heads);
  base.head_dim = int(s.head_dim);
  base.seq_len = s.seq_len;
  const double scale = effective_softmax_scale(config, s.head_dim);
  base.scale = float(scale);
  base.scale_log2 = float(scale * 1.4426950408889634);
  base.output_scale = float(pat.output_scale());
  base.causal = config.causal;
  base.dropout = make_dropout(config.dropout_p, config.dropout_seed);
  base.keep_scale = float(base.dropout.keep_scale);
  base.lse = lse.data;
  base.lse_stride_b = lse.stride_b;
  base.lse_stride_h = lse.stride_h;
  base.lse_stride_s = lse.stride_s;
  base.delta = delta.data;
  base.delta_stride_b = delta.stride_b;
  base.delta_stride_h = delta.stride_h;
  base.delta_stride_s = delta.stride_s;
  return base;
}

// v2's per-branch launch: the FA3-style kernel (backward2_kernel.cuh).
template <class T>
void launch_v2_branch(const details::BackwardParams& base, const PatternParams& pat, const ProblemShape& s,
                      DType dtype, int i, bool direct, bool pipelined, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& dout, const MutableTensor& dk, const MutableTensor& dv,
                      float* dq_acc, cudaStream_t stream) {
  constexpr int kN = details::kBackward2BlockN, kM = details::kBackward2BlockM;
  details::Backward2Args args{};
  args.p = base;
  args.p.branch = i;
  args.p.num_segments = pat.num_segments(i);
  args.p.tiles_per_segment = (pat.max_kept_count(i) + kN - 1) / kN;
  args.direct_dkv = direct;
  if (direct) {
    args.dk_out = dk.data;
    args.dk_stride_b = dk.stride_b;
    args.dk_stride_s = dk.stride_s;
    args.dk_stride_h = dk.stride_h;
    args.dv_out = dv.data;
    args.dv_stride_b = dv.stride_b;
    args.dv_stride_s = dv.stride_s;
    args.dv_stride_h = dv.stride_h;
  }
  const std::int64_t r = pat.dilation[i];
  for (std::int64_t phase = 0; phase < r; ++phase) {
    details::encode_dilated_map(&args.q[phase], dtype, q.data, q, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, kM);
    details::encode_dilated_map(&args.dout[phase], dtype, dout.data, dout, s.batch, s.seq_len, s.heads, s.head_dim, r,
                                phase, kM);
    details::encode_dilated_map(&args.k[phase], dtype, k.data, k, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, kN);
    details::encode_dilated_map(&args.v[phase], dtype, v.data, v, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, kN);
    details::encode_dilated_map_f32(&args.dq[phase], dq_acc, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, kM);
  }
  const std::int64_t tiles = s.batch * s.heads * args.p.num_segments * args.p.tiles_per_segment;
  if (tiles <= 0) return;
  // The kernel instance must match head_dim (launch_backward2_branch checks):
  // 55083d6..fbbfccc launched the head_dim 128 kernel for head_dim 64.
  // pipelined: v2p (DILATED_FA3_BWD=v2p / BackwardKernel::v2_pipelined).
  switch (s.head_dim) {
    case 64:
      if (pipelined) details::launch_backward2_branch<T, 64, true>(args, tiles, stream);
      else details::launch_backward2_branch<T, 64>(args, tiles, stream);
      break;
    case 128:
      if (pipelined) details::launch_backward2_branch<T, 128, true>(args, tiles, stream);
      else details::launch_backward2_branch<T, 128>(args, tiles, stream);
      break;
    default:
      throw Error("cuda.unsupported",
                  "cuda_fa3 backward v2: no kernel for head_dim " + std::to_string(s.head_dim));
  }
}

template <class T>
void run_backward(const Plan& plan, const PatternParams& pat, DType dtype, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const LseTensor& lse, const Tensor& dout,
                  const MutableTensor& dq, const MutableTensor& dk, const MutableTensor& dv,
                  cudaStream_t stream) {
  const ProblemShape& s = plan.shape();
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t rows = std::size_t(s.batch * s.seq_len * s.heads);
  const char* kernel_name = plan.backward_kernel_name();
  const bool pipelined = std::strcmp(kernel_name, "v2p") == 0;  // v2p: v2's launches, pipelined kernel
  const bool v2 = pipelined || std::strcmp(kernel_name, "v2") == 0;
  // v2 with one branch of dilation 1: every key row belongs to exactly one
  // CTA, which writes dK/dV in 16-bit itself; only dQ needs an accumulator.
  const bool direct = v2 && pat.num_branches == 1 && pat.dilation[0] == 1;
  const std::size_t acc_count = direct ? n : 3 * n;
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw Error("cuda.runtime", std::string("cuda_fa3 backward: ") + what + ": " + cudaGetErrorString(e));
  };
  // The accumulators and delta in one block of the backward's pool (workspace.hpp).
  float* acc = static_cast<float*>(details::workspace_alloc((acc_count + rows) * sizeof(float), stream));
  float* delta = acc + acc_count;
  try {
    check(cudaMemsetAsync(acc, 0, acc_count * sizeof(float), stream), "memset");
    const LseTensor delta_t{delta, s.heads * s.seq_len, s.seq_len, 1};  // dense [b, h, s]
    details::launch_delta<T>(dout, out, delta_t, s.batch, s.seq_len, s.heads, s.head_dim, stream);
    details::BackwardParams base = backward_base(plan.config(), s, pat, lse, delta_t);
    base.q_window_len = base.k_window_len = s.seq_len;  // the whole sequence
    base.dq = acc;
    base.dk = direct ? nullptr : acc + n;
    base.dv = direct ? nullptr : acc + 2 * n;
    for (int i = 0; i < pat.num_branches; ++i) {
      if (v2) {
        launch_v2_branch<T>(base, pat, s, dtype, i, direct, pipelined, q, k, v, dout, dk, dv, acc, stream);
        continue;
      }
      details::BackwardArgs args{};
      args.p = base;
      args.p.branch = i;
      args.p.num_segments = pat.num_segments(i);
      args.p.tiles_per_segment = (pat.max_kept_count(i) + 63) / 64;  // (first_segment 0)
      const std::int64_t r = pat.dilation[i];
      for (std::int64_t phase = 0; phase < r; ++phase) {
        details::encode_dilated_map(&args.q[phase], dtype, q.data, q, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, 64);
        details::encode_dilated_map(&args.k[phase], dtype, k.data, k, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, 64);
        details::encode_dilated_map(&args.v[phase], dtype, v.data, v, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, 64);
        details::encode_dilated_map(&args.dout[phase], dtype, dout.data, dout, s.batch, s.seq_len, s.heads, s.head_dim, r, phase, 64);
      }
      const std::int64_t tiles = s.batch * s.heads * args.p.num_segments * args.p.tiles_per_segment;
      if (tiles <= 0) continue;
      switch (s.head_dim) {
        case 64: details::launch_backward_branch<T, 64>(args, tiles, stream); break;
        case 128: details::launch_backward_branch<T, 128>(args, tiles, stream); break;
        default: details::launch_backward_branch<T, 256>(args, tiles, stream); break;
      }
    }
    details::launch_store_gradient<T>(acc, dq, s.batch, s.seq_len, s.heads, s.head_dim, stream);
    if (!direct) {
      details::launch_store_gradient<T>(acc + n, dk, s.batch, s.seq_len, s.heads, s.head_dim, stream);
      details::launch_store_gradient<T>(acc + 2 * n, dv, s.batch, s.seq_len, s.heads, s.head_dim, stream);
    }
  } catch (...) {
    details::workspace_free(acc, stream);
    throw;
  }
  details::workspace_free(acc, stream);
}

}  // namespace

const char* Plan::backward_kernel_name() const {
  // v2 covers head_dim 64 and 128 without dropout; block-sparse problems run
  // v1 (v2 walks dense/dilated key ranges only).
  const bool covered =
      details::backward2_covers(shape_.head_dim, make_dropout(config_.dropout_p, config_.dropout_seed).enabled()) &&
      !config_.block_sparse;
  BackwardKernel want = backward_kernel_;
  if (want == BackwardKernel::automatic) {
    // DILATED_FA3_BWD=v1|v2|v2p overrides; otherwise the v2 family where it
    // is verified on an H100 (details::backward2_auto), pipelined if
    // details::kBackward2AutoPipelined.
    const char* env = std::getenv("DILATED_FA3_BWD");
    if (env && std::strcmp(env, "v1") == 0) want = BackwardKernel::v1;
    else if (env && std::strcmp(env, "v2") == 0) want = BackwardKernel::v2;
    else if (env && std::strcmp(env, "v2p") == 0) want = BackwardKernel::v2_pipelined;
    else if (!details::backward2_auto(shape_.head_dim)) want = BackwardKernel::v1;
    else want = details::kBackward2AutoPipelined ? BackwardKernel::v2_pipelined : BackwardKernel::v2;
  }
  if (!covered) return "v1";
  if (want == BackwardKernel::v2) return "v2";
  if (want == BackwardKernel::v2_pipelined) return "v2p";
  return "v1";
}

void Plan::backward(Tensor q, Tensor k, Tensor v, Tensor out, LseTensor lse, Tensor dout, MutableTensor dq,
                    MutableTensor dk, MutableTensor dv, cudaStream_t stream) const {
  if (!backward_support_.ok)
    throw Error("cuda.unsupported", "cuda_fa3 cannot run this backward: " + backward_support_.reason);
  check_tensor("q", q, shape_);
  check_tensor("k", k, shape_);
  check_tensor("v", v, shape_);
  check_tensor("out", out, shape_);
  check_tensor("dout", dout, shape_);
  check_tensor("dq", dq, shape_);
  check_tensor("dk", dk, shape_);
  check_tensor("dv", dv, shape_);
  if (!lse.data) throw Error("cuda.tensor_layout", "cuda_fa3: lse is null");
  const void* inputs[] = {q.data, k.data, v.data, out.data, dout.data};
  for (const void* g : {static_cast<const void*>(dq.data), static_cast<const void*>(dk.data),
                        static_cast<const void*>(dv.data)})
    for (const void* in : inputs)
      if (g == in) throw Error("cuda.aliasing", "cuda_fa3: gradients must not alias q, k, v, out or dout");
  if (dq.data == dk.data || dq.data == dv.data || dk.data == dv.data)
    throw Error("cuda.aliasing", "cuda_fa3: dq, dk and dv must be distinct");
  if (dtype_ == DType::bf16)
    run_backward<__nv_bfloat16>(*this, pattern_, dtype_, q, k, v, out, lse, dout, dq, dk, dv, stream);
  else
    run_backward<__half>(*this, pattern_, dtype_, q, k, v, out, lse, dout, dq, dk, dv, stream);
}

namespace {

// The window [w.q_begin, w.q_begin + w.q_len), the same for keys and made
// of whole segments of branch i, as a sequence of its own: its pattern is the
// plan's with seq_len = the window's length (segments, offsets and causal
// order are the same, counted from the window's start; no dropout, which
// v1 handles, so no global positions are needed). v2/v2p into fp32
// accumulators (no direct 16-bit dK/dV: the call adds), delta copied dense
// (v2 reads [b, h, s]), then added into the caller's 16-bit gradients.
template <class T>
void run_backward_window_v2(const Plan& plan, const PatternParams& pat, DType dtype, int i, const Window& w,
                            bool pipelined, const Tensor& q, const Tensor& dout, const LseTensor& lse,
                            const LseTensor& delta, const MutableTensor& dq, const Tensor& k, const Tensor& v,
                            const MutableTensor& dk, const MutableTensor& dv, cudaStream_t stream) {
  ProblemShape sub = plan.shape();
  sub.seq_len = w.q_len;
  PatternParams sp = pat;
  sp.seq_len = w.q_len;
  const std::int64_t n = sub.batch * sub.seq_len * sub.heads * sub.head_dim;
  const std::int64_t rows = sub.batch * sub.heads * sub.seq_len;
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw Error("cuda.runtime", std::string("cuda_fa3 backward_window: ") + what + ": " + cudaGetErrorString(e));
  };
  float* acc = static_cast<float*>(details::workspace_alloc(std::size_t(3 * n + rows) * sizeof(float), stream));
  try {
    float* dense_delta = acc + 3 * n;
    check(cudaMemsetAsync(acc, 0, std::size_t(3 * n) * sizeof(float), stream), "memset");
    for (std::int64_t b = 0; b < sub.batch; ++b)
      check(cudaMemcpy2DAsync(dense_delta + b * sub.heads * sub.seq_len, std::size_t(sub.seq_len) * sizeof(float),
                              delta.data + b * delta.stride_b, std::size_t(delta.stride_h) * sizeof(float),
                              std::size_t(sub.seq_len) * sizeof(float), std::size_t(sub.heads),
                              cudaMemcpyDeviceToDevice, stream),
            "delta copy");
    details::BackwardParams base =
        backward_base(plan.config(), sub, sp, lse, LseTensor{dense_delta, sub.heads * sub.seq_len, sub.seq_len, 1});
    base.q_window_len = base.k_window_len = sub.seq_len;
    base.dq = acc;
    base.dk = acc + n;
    base.dv = acc + 2 * n;
    launch_v2_branch<T>(base, sp, sub, dtype, i, /*direct=*/false, pipelined, q, k, v, dout, dk, dv, acc, stream);
    details::launch_store_gradient<T>(acc, dq, sub.batch, sub.seq_len, sub.heads, sub.head_dim, stream, true);
    details::launch_store_gradient<T>(acc + n, dk, sub.batch, sub.seq_len, sub.heads, sub.head_dim, stream, true);
    details::launch_store_gradient<T>(acc + 2 * n, dv, sub.batch, sub.seq_len, sub.heads, sub.head_dim, stream, true);
  } catch (...) {
    details::workspace_free(acc, stream);
    throw;
  }
  details::workspace_free(acc, stream);
}

// One branch of the backward on a window pair, by v1 (the kernel that
// takes windows), added into the caller's dq, dk, dv through fp32
// accumulators of the windows' sizes.
template <class T>
void run_backward_window(const Plan& plan, const PatternParams& pat, DType dtype, int i, const Window& w,
                         const Tensor& q, const Tensor& dout, const LseTensor& lse, const LseTensor& delta,
                         const MutableTensor& dq, const Tensor& k, const Tensor& v, const MutableTensor& dk,
                         const MutableTensor& dv, cudaStream_t stream) {
  const ProblemShape& s = plan.shape();
  const std::int64_t seg = pat.segment_length[i];
  const std::int64_t first = std::max(w.q_begin, w.k_begin) / seg;
  const std::int64_t last = std::min(w.q_begin + w.q_len, w.k_begin + w.k_len) - 1;
  if (last < first * seg) return;  // no shared segment: nothing to add
  // One window of whole segments for queries and keys alike (src/dist's
  // local branches): the whole-sequence backward of that window, so the v2
  // family runs it where it covers the problem (v1 takes any window pair, at
  // about half v2p's rate).
  const std::int64_t end = w.q_begin + w.q_len;
  const bool same_whole_segments = w.q_begin == w.k_begin && w.q_len == w.k_len && w.q_begin % seg == 0 &&
                                   (end % seg == 0 || end == s.seq_len) && delta.stride_s == 1;
  const char* kernel_name = plan.backward_kernel_name();
  if (same_whole_segments && std::strcmp(kernel_name, "v1") != 0) {
    run_backward_window_v2<T>(plan, pat, dtype, i, w, std::strcmp(kernel_name, "v2p") == 0, q, dout, lse, delta,
                              dq, k, v, dk, dv, stream);
    return;
  }
  details::BackwardArgs args{};
  args.p = backward_base(plan.config(), s, pat, lse, delta);
  args.p.branch = i;
  args.p.q_window_begin = w.q_begin;
  args.p.q_window_len = w.q_len;
  args.p.k_window_begin = w.k_begin;
  args.p.k_window_len = w.k_len;
  args.p.windowed = true;
  args.p.first_segment = first;
  args.p.num_segments = last / seg - first + 1;
  args.p.tiles_per_segment = (pat.max_kept_in_window(i, w.k_len) + 63) / 64;
  const std::int64_t r = pat.dilation[i];
  encode_window_maps(args.q, dtype, q, s, w.q_len, r, 64);
  encode_window_maps(args.dout, dtype, dout, s, w.q_len, r, 64);
  encode_window_maps(args.k, dtype, k, s, w.k_len, r, 64);
  encode_window_maps(args.v, dtype, v, s, w.k_len, r, 64);
  const std::int64_t tiles = s.batch * s.heads * args.p.num_segments * args.p.tiles_per_segment;
  const std::int64_t nq = s.batch * w.q_len * s.heads * s.head_dim, nk = s.batch * w.k_len * s.heads * s.head_dim;
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw Error("cuda.runtime", std::string("cuda_fa3 backward_window: ") + what + ": " + cudaGetErrorString(e));
  };
  float* acc = static_cast<float*>(details::workspace_alloc(std::size_t(nq + 2 * nk) * sizeof(float), stream));
  try {
    // Only the kept rows (1/r of the window) are written by the kernel, so
    // only they are zeroed and added back (kept_rows.cuh).
    const bool kept = details::kept_rows_enabled();
    if (kept) {
      details::launch_zero_kept(acc, pat, i, w.q_begin, s.batch, w.q_len, s.heads, s.head_dim, stream);
      details::launch_zero_kept(acc + nq, pat, i, w.k_begin, s.batch, w.k_len, s.heads, s.head_dim, stream);
      details::launch_zero_kept(acc + nq + nk, pat, i, w.k_begin, s.batch, w.k_len, s.heads, s.head_dim, stream);
    } else {
      check(cudaMemsetAsync(acc, 0, std::size_t(nq + 2 * nk) * sizeof(float), stream), "memset");
    }
    args.p.dq = acc;
    args.p.dk = acc + nq;
    args.p.dv = acc + nq + nk;
    switch (s.head_dim) {
      case 64: details::launch_backward_branch<T, 64>(args, tiles, stream); break;
      case 128: details::launch_backward_branch<T, 128>(args, tiles, stream); break;
      default: details::launch_backward_branch<T, 256>(args, tiles, stream); break;
    }
    if (kept) {
      details::launch_add_kept<T>(acc, dq, pat, i, w.q_begin, s.batch, w.q_len, s.heads, s.head_dim, stream);
      details::launch_add_kept<T>(acc + nq, dk, pat, i, w.k_begin, s.batch, w.k_len, s.heads, s.head_dim, stream);
      details::launch_add_kept<T>(acc + nq + nk, dv, pat, i, w.k_begin, s.batch, w.k_len, s.heads, s.head_dim,
                                  stream);
    } else {
      details::launch_store_gradient<T>(acc, dq, s.batch, w.q_len, s.heads, s.head_dim, stream, true);
      details::launch_store_gradient<T>(acc + nq, dk, s.batch, w.k_len, s.heads, s.head_dim, stream, true);
      details::launch_store_gradient<T>(acc + nq + nk, dv, s.batch, w.k_len, s.heads, s.head_dim, stream, true);
    }
  } catch (...) {
    details::workspace_free(acc, stream);
    throw;
  }
  details::workspace_free(acc, stream);
}

}  // namespace

void Plan::backward_delta(Tensor out, Tensor dout, std::int64_t rows, LseTensor delta, cudaStream_t stream) const {
  if (!backward_support_.ok)
    throw Error("cuda.unsupported", "cuda_fa3 cannot run this backward: " + backward_support_.reason);
  check_tensor("out", out, shape_);
  check_tensor("dout", dout, shape_);
  if (!delta.data) throw Error("cuda.tensor_layout", "cuda_fa3: delta is null");
  if (rows < 1) throw Error("window.range", "cuda_fa3: backward_delta needs at least one row");
  if (dtype_ == DType::bf16)
    details::launch_delta<__nv_bfloat16>(dout, out, delta, shape_.batch, rows, shape_.heads, shape_.head_dim, stream);
  else
    details::launch_delta<__half>(dout, out, delta, shape_.batch, rows, shape_.heads, shape_.head_dim, stream);
}

void Plan::backward_window(int branch, std::int64_t q_begin, std::int64_t q_len, Tensor q, Tensor dout,
                           LseTensor lse, LseTensor delta, MutableTensor dq, std::int64_t k_begin,
                           std::int64_t k_len, Tensor k, Tensor v, MutableTensor dk, MutableTensor dv,
                           cudaStream_t stream) const {
  check_window_call(branch, q_begin, q_len, k_begin, k_len);
  if (!backward_support_.ok)
    throw Error("cuda.unsupported", "cuda_fa3 cannot run this backward: " + backward_support_.reason);
  check_tensor("q", q, shape_);
  check_tensor("dout", dout, shape_);
  check_tensor("k", k, shape_);
  check_tensor("v", v, shape_);
  check_tensor("dq", dq, shape_);
  check_tensor("dk", dk, shape_);
  check_tensor("dv", dv, shape_);
  if (!lse.data || !delta.data) throw Error("cuda.tensor_layout", "cuda_fa3: lse or delta is null");
  const void* inputs[] = {q.data, k.data, v.data, dout.data};
  for (const void* g : {static_cast<const void*>(dq.data), static_cast<const void*>(dk.data),
                        static_cast<const void*>(dv.data)})
    for (const void* in : inputs)
      if (g == in) throw Error("cuda.aliasing", "cuda_fa3: gradients must not alias q, k, v or dout");
  if (dq.data == dk.data || dq.data == dv.data || dk.data == dv.data)
    throw Error("cuda.aliasing", "cuda_fa3: dq, dk and dv must be distinct");
  const Window w{q_begin, q_len, k_begin, k_len};
  if (dtype_ == DType::bf16)
    run_backward_window<__nv_bfloat16>(*this, pattern_, dtype_, branch, w, q, dout, lse, delta, dq, k, v, dk, dv,
                                       stream);
  else
    run_backward_window<__half>(*this, pattern_, dtype_, branch, w, q, dout, lse, delta, dq, k, v, dk, dv, stream);
}

}  // namespace dilated::cuda_fa3
