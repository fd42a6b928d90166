// dilated/details/forward_kernel_gpu_pipelined.hpp - the GPU-shaped forward
// (forward_kernel_gpu.hpp) with its global loads software-pipelined.
//
// Same tiles, thread mapping, scratch layout and semantics as
// ForwardBranchKernelGpu (read its header first). What differs:
// - The work of a key tile is a fixed list of stages: nS = ceil(d / 32)
//   S chunks (a 64 x 32 Q chunk + a 64 x 32 K chunk), then ceil(kn / VC) V
//   chunks. Every stage moves at most 4096 floats from global memory, i.e. NL
//   = 1024 / NT float4 per thread. The loads of stage t + 1 (possibly of the
//   next key tile or span) are issued into registers right after stage t was
//   stored to scratch, so their latency runs under stage t's FMAs instead of
//   stalling the team between two barriers (the non-pipelined kernel
//   has 2 teams of 4 warps per SM to hide it, which is too few). Scratch
//   stays single-buffered: Kokkos 4.6 on CUDA caps a team's level-0 scratch at
//   the device's sharedMemPerBlock (48 KiB; it does not opt into more), which
//   rules out double buffering next to the 16 KiB P^T tile.
// - Softmax in base 2: scores are scaled by scale * log2(e) and exponentiated
//   with exp2f (one MUFU.EX2 plus range handling, instead of fast_exp's
//   polynomial); m is kept in base 2 and converted at the LSE merge.
// - Fewer integer instructions per FMA: Q/K staged as 4-row x 4-dim blocks
//   (one float4 store per transposed dim), rows addressed as a tile's first
//   row plus j * dilation * stride, and the swizzle offsets of the S and PV
//   loops computed once per group of 8 dims / 4 keys.
// On the H100 (LongNet d128 fp32, 1M tokens; perf_tests/results/
// h100-portable-2026-11-27b-gpu-forward/): 256-thread teams 22.5 TFLOP/s,
// 128-thread teams 21.0 (ForwardBranchKernelGpu: 20.2 / 17.6). Nsight Compute
// on the 128-thread kernel: the top stall moved from global loads (long
// scoreboard) to shared-memory loads (short scoreboard) - with 255 registers
// it runs 2 warps per scheduler, which 256-thread teams double.
// MINB: teams per SM that __launch_bounds__ must allow. (ptxas, d = 128:
// 128-thread teams at MINB = 3 spill 2.3 KB under their 168-register cap;
// 256-thread teams with both loop unrolls at 1 spill as much as at 2, ~0.3
// KB - neither was worth a variant.)
// SPLIT (256 threads): a warp holds 4 query rows x 8 key columns of threads
// instead of 2 x 16, so a warp's float4 reads of K, V (8 distinct instead of
// 16: 128 bytes, one shared-memory wavefront instead of two) and of Q, P^T
// (4 distinct, one wavefront) cost 2 wavefronts per 16 FMAs of S instead of
// 3, and 3 per 32 FMAs of PV instead of 5 - shared-memory loads are the top
// stall. A row's 16 threads are then 8 lanes of each of two warps: the row
// max (per key tile) and the row sum (at the end) combine the two halves
// through 2 x 64 floats of scratch after a shuffle over 8 lanes. Measured
// (H100, LongNet d128 fp32 1M x 16, perf_tests/results/
// h100-portable-2026-11-27c-gpu-forward/): 21.3 TFLOP/s vs pipe256's 22.5,
// 5% slower - ptxas spills 1.1 KB instead of 0.7 KB under the 128-register
// cap and the row max adds a barrier per key tile; the stall is the loads'
// latency more than the shared-memory bandwidth this saves. Kept selectable
// ("pipe256s") for when registers are freed (e.g. P in registers).
// LEAN (256 threads, "pipe256l", the default): the same schedule with the
// staging of rows that are whole float4 rows of exactly DMAX = 32, 64 or 128
// elements done by hoisted 32-bit row offsets, rows past a ragged tile
// re-read instead of zero-filled, one non-finite test per V float4, 32-bit
// sparse indices and one MUFU.EX2 per exponential. Nsight Compute on pipe256
// (perf_tests/results/h100-portable-2026-11-27e-gpu-forward/run1) put 24% of
// the instructions and 35% of the stall samples in the staging code (64-bit
// row pointers recomputed per stage and row, per-element fallbacks, the
// prefetch registers spilled to local memory under the 128-register cap);
// LEAN executes 14% fewer instructions and spills 180 / 280 bytes instead of
// 316 / 696 (none of it the prefetch buffer): 26.1 TFLOP/s vs 22.5 on
// LongNet d128 fp32 1M x 16 (run2).
#pragma once

#include <type_traits>

#include "dilated/details/forward_kernel_gpu.hpp"

#if defined(KOKKOS_ENABLE_CUDA)

#if defined(__CUDA_ARCH__)
#define DILATED_GPU_UNROLL _Pragma("unroll")
#else
#define DILATED_GPU_UNROLL
#endif

namespace dilated {
namespace details {

KOKKOS_INLINE_FUNCTION float gpu_exp2(float x) { return ::exp2f(x); }
// 2^x by one MUFU.EX2 (PTX ex2.approx.ftz: ~2 ulp; results below 2^-126 flush
// to 0, which a softmax term relative to its row max may lose). exp2f adds
// the subnormal range handling around the same instruction.
KOKKOS_INLINE_FUNCTION float gpu_exp2_approx(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return ::exp2f(x);
#endif
}

template <int DMAX, int NT, int MINB, bool SPLIT = false, bool LEAN = false>
struct ForwardBranchKernelGpuPipelined {
  static_assert(DMAX % 16 == 0 && DMAX <= kGpuMaxHeadDim, "DMAX: 16, 32, 64 or 128");
  static_assert(NT == 128 || NT == 256, "NT: 128 or 256 threads");
  static constexpr int DN = DMAX / 16;
  static constexpr int QM = kGpuTileQ * 16 / NT;  // queries per thread
  static constexpr int QG = QM / 4;
  static_assert(!SPLIT || NT == 256, "SPLIT: 256-thread teams (16 x 16 threads in 8 warps)");
  static constexpr int kRowLanes = SPLIT ? 8 : 16;  // a row's threads in one warp
  // Unroll factors of the S loop (groups of 8 dims) and the PV loop (groups
  // of 4 keys), on top of the unrolled group.
#ifndef DILATED_GPU_PIPE_S_UNROLL
#define DILATED_GPU_PIPE_S_UNROLL 2
#endif
#ifndef DILATED_GPU_PIPE_PV_UNROLL
#define DILATED_GPU_PIPE_PV_UNROLL 2
#endif
  static constexpr int kSUnroll = DILATED_GPU_PIPE_S_UNROLL;
  static constexpr int kPVUnroll = DILATED_GPU_PIPE_PV_UNROLL;
  static constexpr int VC = kGpuRegion * 2 / DMAX < kGpuTileK ? kGpuRegion * 2 / DMAX : kGpuTileK;
  static constexpr int NL = kGpuRegion * 2 / 4 / NT;  // float4 loads per thread and stage
  static constexpr int VF = VC * (DMAX / 4);          // float4 of one V chunk (<= NL * NT)
  static_assert(VF <= NL * NT, "a V chunk fits one stage");
  // LEAN: V rows one pass of the team's float4 loads covers, and the passes.
  static constexpr int kVRows = NT * 4 / DMAX;
  static constexpr int kVI = VC / kVRows;
  static_assert(!LEAN || (NT == 256 && !SPLIT && DMAX % kGpuChunk == 0 && kVI <= NL),
                "LEAN: 256 threads, DMAX 32, 64 or 128");
  static_assert(kGpuTileQ == 64 && kGpuTileK == 64 && kGpuChunk == 32,
                "S stages: 2 x 128 blocks of 4 x 4");
  using Base = ForwardBranchKernelGpu<DMAX, NT>;
  using member_type = typename Kokkos::TeamPolicy<Kokkos::Cuda,
                                                  Kokkos::LaunchBounds<NT, MINB>>::member_type;

  TensorRef<const float, 4> q, k, v;
  TensorRef<float, 4> out;
  TensorRef<float, 3> lse;
  KernelParams p;
  bool vec4 = false;
  std::int64_t league_offset = 0;

  // SPLIT adds the two halves' row max and row sum (2 x 2 x 64 floats).
  KOKKOS_INLINE_FUNCTION static constexpr std::size_t scratch_bytes() {
    return Base::scratch_bytes() + (SPLIT ? 4 * kGpuTileQ * sizeof(float) : 0);
  }

  // Where the team is: span sp (keys [k0, kend) of it left), key tile
  // [k0, k0 + kn), stage st of nst. LEAN keeps sparse indices in 32 bits
  // (the launcher checks they fit) - 64-bit cursors cost registers that the
  // prefetch buffer then spills for.
  using Idx = std::conditional_t<LEAN, int, std::int64_t>;
  struct Cursor {
    Idx sp, k0, kend;
    int kn, st, nst;
  };

  // Moves to the next non-empty key tile; false past the last span.
  KOKKOS_INLINE_FUNCTION bool next_tile(const Spans& spans, int ns, Cursor& cu) const {
    cu.k0 += kGpuTileK;
    if constexpr (LEAN) {  // one span (no block-sparse runs; the launcher checks)
      if (cu.k0 >= cu.kend) return false;
    } else {
      while (cu.k0 >= cu.kend) {
        if (++cu.sp >= spans.count) return false;
        spans.get(cu.sp, &cu.k0, &cu.kend);
      }
    }
    cu.kn = static_cast<int>(cu.kend - cu.k0 < kGpuTileK ? cu.kend - cu.k0 : kGpuTileK);
    cu.st = 0;
    cu.nst = ns + (cu.kn + VC - 1) / VC;
    return true;
  }
  KOKKOS_INLINE_FUNCTION bool advance(const Spans& spans, int ns, Cursor& cu) const {
    if (++cu.st < cu.nst) return true;
    return next_tile(spans, ns, cu);
  }

  // Four elements x0 .. x0 + 3 of a row (0 past head_dim).
  KOKKOS_INLINE_FUNCTION GpuFloat4 load4(const float* src, std::int64_t x0,
                                         std::int64_t xstride) const {
    const std::int64_t d = p.head_dim;
    if (vec4 && x0 + 4 <= d) return *reinterpret_cast<const GpuFloat4*>(src + x0);
    GpuFloat4 t{0.f, 0.f, 0.f, 0.f};
    if (x0 < d) t.x = src[x0 * xstride];
    if (x0 + 1 < d) t.y = src[(x0 + 1) * xstride];
    if (x0 + 2 < d) t.z = src[(x0 + 2) * xstride];
    if (x0 + 3 < d) t.w = src[(x0 + 3) * xstride];
    return t;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, kGpuTileQ);
    if (rows.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = rows.offset;
    const Idx q0 = static_cast<Idx>(rows.begin), qn = static_cast<Idx>(rows.count);
    const std::int64_t d = p.head_dim;
    const int ns = static_cast<int>((d + kGpuChunk - 1) / kGpuChunk);
    const int rank = team.team_rank();
    // SPLIT: warp w, lane l -> tx = (l & 7) + 8 (w & 1), ty = (l >> 3) + 4 (w >> 1);
    // hx = w & 1 is the half of the row's key columns.
    const int hx = SPLIT ? (rank >> 5) & 1 : 0;
    const int ty = SPLIT ? ((rank >> 3) & 3) | ((rank >> 6) << 2) : rank >> 4;
    const int tx = SPLIT ? (rank & 7) | (hx << 3) : rank & 15;

    float* const smem =
        static_cast<float*>(team.team_scratch(0).get_shmem_aligned(scratch_bytes(), 16));
    float* const qs = smem;                          // [32][64] swizzled Q^T chunk
    float* const ks = smem + kGpuRegion;             // [32][64] swizzled K^T chunk
    float* const vs = smem;                          // [VC][DMAX] V rows (reuses qs, ks)
    float* const pt = smem + 2 * kGpuRegion;         // [64 keys][64 queries] swizzled P^T
    float* const vbad = pt + kGpuTileK * kGpuTileQ;  // [64] V row has a non-finite element
    float* const vany = vbad + kGpuTileK;            // [1] any of them
    // SPLIT only: [2][64] row max halves, [2][64] row sum halves (past
    // Base::scratch_bytes(), 16-byte aligned).
    float* const rmax = smem + Base::scratch_bytes() / sizeof(float);
    float* const rsum = rmax + 2 * kGpuTileQ;

    // Scores in base 2: exp(x * scale) = exp2(x * scale * log2(e)).
    const float sl2 = static_cast<float>(p.scale * 1.4426950408889634);
    float o[QM][DN];
    float m[QM], l[QM];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      m[a] = -INFINITY;
      l[a] = 0.f;
      DILATED_GPU_UNROLL
      for (int e = 0; e < DN; ++e) o[a][e] = 0.f;
    }
    float s[QM][4];
    const std::int64_t qxs = q.stride[3], kxs = k.stride[3], vxs = v.stride[3];
    const auto pos = [&](std::int64_t j) { return p.pattern.position(br, c.s, off, j); };

    // Rows are linear in the sparse index (position = base + j * r): one
    // row pointer per tile and a step, instead of the full index arithmetic
    // per loaded row.
    // (Computed where used: kept live across the loop they cost spills.)
    const auto step = [&](std::int64_t stride) { return p.pattern.dilation[br] * stride; };
    // An S stage moves 2 x 128 blocks of 4 rows x 4 dims (Q blocks, then K
    // blocks): thread `rank` owns blocks rank + t NT, t < NL / 4. Block b:
    // rows 4 r .. 4 r + 3, dims 4 g .. 4 g + 3 of the chunk (r = (b & 127) >> 3,
    // g = b & 7); lanes 8 apart in g read 128 contiguous bytes of a row, and the
    // transposed tile takes each dim as one float4 store (swizzled column r ^ g,
    // conflict-free across the 8 g of a store phase).
    GpuFloat4 buf[NL];
    // LEAN (rows contiguous, 16-byte aligned and exactly DMAX long, and 64
    // sparse rows span < 2^31 elements; the launcher checks): the thread's
    // staging rows as one 64-bit base per tensor plus 32-bit row offsets,
    // instead of row pointers recomputed per stage with per-element
    // fallbacks. S stages: warps 0-3 stage Q blocks, warps 4-7 K blocks
    // (blk = rank below), rows lr .. lr + 3, dims 4 (rank & 7) + 0..3 of the
    // chunk; V stages: rows vr + i kVRows, dims 4 (rank % (DMAX / 4)) + 0..3.
    // Rows past the tile load the tile's last row again instead of zeros (no
    // predicates, no zeroing): their K columns are masked (P = 0), their Q
    // rows are never stored, and their V rows meet P = 0 (a non-finite
    // element there is cleaned like any other and its flag lies past kn).
    const bool lk = rank >= 128;
    const int lr = 4 * ((rank & 127) >> 3);
    const int vr = rank / (DMAX / 4);
    const std::int64_t dil = p.pattern.dilation[br];
    const int qrs = static_cast<int>(dil * q.stride[1]), krs = static_cast<int>(dil * k.stride[1]);
    const int vrs = static_cast<int>(dil * v.stride[1]);
    // Element offset of (c.b, row, c.h, 0); sparse index j's row of K or V is
    // that of index 0 plus j * dil rows.
    const auto eoff = [&](const auto& t, std::int64_t row) {
      return c.b * t.stride[0] + row * t.stride[1] + c.h * t.stride[2];
    };
    const std::int64_t sz =
        LEAN ? (lk ? eoff(k, p.k_row(pos(0))) : eoff(q, p.q_row(pos(q0)))) + 4 * (rank & 7) : 0;
    const std::int64_t vz = LEAN ? eoff(v, p.k_row(pos(0))) + 4 * (rank % (DMAX / 4)) : 0;
    const auto load_stage = [&](const Cursor& cu) {
      if constexpr (LEAN) {
        if (cu.st < ns) {
          const int rs = lk ? krs : qrs;
          const float* const src =
              (lk ? k.data + static_cast<std::int64_t>(cu.k0) * krs : q.data) + sz +
              cu.st * kGpuChunk;
          const int last = static_cast<int>(lk ? cu.kn : qn) - 1;
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc) {
            const int j = lr + cc < last ? lr + cc : last;
            buf[cc] = *reinterpret_cast<const GpuFloat4*>(src + j * rs);
          }
        } else {
          const int j0 = (cu.st - ns) * VC;
          const int last = cu.kn - j0 - 1;
          const float* const src = v.data + vz + static_cast<std::int64_t>(cu.k0 + j0) * vrs;
          DILATED_GPU_UNROLL
          for (int i = 0; i < kVI; ++i) {
            const int j = vr + i * kVRows < last ? vr + i * kVRows : last;
            buf[i] = *reinterpret_cast<const GpuFloat4*>(src + j * vrs);
          }
        }
        return;
      }
      if (cu.st < ns) {
        const std::int64_t x0 = static_cast<std::int64_t>(cu.st) * kGpuChunk;
        const float* const qrow0 = &q(c.b, p.q_row(pos(q0)), c.h, 0);
        const float* const krow0 = &k(c.b, p.k_row(pos(cu.k0)), c.h, 0);
        DILATED_GPU_UNROLL
        for (int t = 0; t < NL / 4; ++t) {
          const int blk = rank + t * NT, r = (blk & 127) >> 3, g = blk & 7;
          const bool is_k = blk >= 128;
          const float* const row0 = is_k ? krow0 : qrow0;
          const std::int64_t rstep = step(is_k ? k.stride[1] : q.stride[1]);
          const std::int64_t xs = is_k ? kxs : qxs;
          const std::int64_t n = is_k ? cu.kn : qn;
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc) {
            const int j = 4 * r + cc;
            buf[4 * t + cc] = j < n ? load4(row0 + j * rstep, x0 + 4 * g, xs)
                                    : GpuFloat4{0.f, 0.f, 0.f, 0.f};
          }
        }
      } else {
        const int j0 = (cu.st - ns) * VC;
        const int jn = cu.kn - j0 < VC ? cu.kn - j0 : VC;
        const float* const vrow0 = &v(c.b, p.k_row(pos(cu.k0 + j0)), c.h, 0);
        DILATED_GPU_UNROLL
        for (int i = 0; i < NL; ++i) {
          const int f = rank + i * NT, jj = f / (DMAX / 4), g = f % (DMAX / 4);
          buf[i] = GpuFloat4{0.f, 0.f, 0.f, 0.f};
          if (f < VF && jj < jn) buf[i] = load4(vrow0 + jj * step(v.stride[1]), 4 * g, vxs);
        }
      }
    };
    // Registers -> scratch (between two barriers).
    const auto store_stage = [&](const Cursor& cu) {
      if (LEAN && cu.st >= ns) {
        const int j0 = (cu.st - ns) * VC;
        DILATED_GPU_UNROLL
        for (int i = 0; i < kVI; ++i) {
          const int jj = vr + i * kVRows;
          GpuFloat4 e = buf[i];
          // x * 0 is +-0 for finite x and NaN otherwise: one test per float4,
          // the per-element clean-up only where it fails.
          if (e.x * 0.f + e.y * 0.f + e.z * 0.f + e.w * 0.f != 0.f) {
            if (e.x * 0.f != 0.f) e.x = 0.f;
            if (e.y * 0.f != 0.f) e.y = 0.f;
            if (e.z * 0.f != 0.f) e.z = 0.f;
            if (e.w * 0.f != 0.f) e.w = 0.f;
            vbad[j0 + jj] = 1.f;
            *vany = 1.f;
          }
          *reinterpret_cast<GpuFloat4*>(vs + jj * DMAX + 4 * (rank % (DMAX / 4))) = e;
        }
        return;
      }
      if (cu.st < ns) {
        DILATED_GPU_UNROLL
        for (int t = 0; t < NL / 4; ++t) {
          const int blk = rank + t * NT, r = (blk & 127) >> 3, g = blk & 7;
          float* const dst = (blk >= 128 ? ks : qs) + 4 * g * kGpuTileQ + ((r ^ g) << 2);
          const GpuFloat4* const e = buf + 4 * t;
          *reinterpret_cast<GpuFloat4*>(dst) = GpuFloat4{e[0].x, e[1].x, e[2].x, e[3].x};
          *reinterpret_cast<GpuFloat4*>(dst + kGpuTileQ) = GpuFloat4{e[0].y, e[1].y, e[2].y, e[3].y};
          *reinterpret_cast<GpuFloat4*>(dst + 2 * kGpuTileQ) =
              GpuFloat4{e[0].z, e[1].z, e[2].z, e[3].z};
          *reinterpret_cast<GpuFloat4*>(dst + 3 * kGpuTileQ) =
              GpuFloat4{e[0].w, e[1].w, e[2].w, e[3].w};
        }
        if (cu.st == 0 && rank <= kGpuTileK) {
          if (rank < kGpuTileK) vbad[rank] = 0.f; else *vany = 0.f;
        }
      } else {
        const int j0 = (cu.st - ns) * VC;
        DILATED_GPU_UNROLL
        for (int i = 0; i < NL; ++i) {
          const int f = rank + i * NT, jj = f / (DMAX / 4), g = f % (DMAX / 4);
          if (f >= VF) continue;
          float e[4] = {buf[i].x, buf[i].y, buf[i].z, buf[i].w};
          bool bad = false;
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc)
            if (e[cc] * 0.f != 0.f) {  // NaN or inf: out of the product
              e[cc] = 0.f;
              bad = true;
            }
          if (bad) {
            vbad[j0 + jj] = 1.f;
            *vany = 1.f;
          }
          *reinterpret_cast<GpuFloat4*>(vs + jj * DMAX + 4 * g) = GpuFloat4{e[0], e[1], e[2], e[3]};
        }
      }
    };

    const Spans spans =
        key_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, q0, qn);
    // LEAN: the single span [lo, hi), entered one tile before its start.
    Cursor cu{-1, 0, 0, 0, 0, 0};
    if constexpr (LEAN)
      cu = Cursor{0, static_cast<Idx>(spans.lo - kGpuTileK), static_cast<Idx>(spans.hi), 0, 0, 0};
    bool have = next_tile(spans, ns, cu);
    if (have) load_stage(cu);
    while (have) {
      team.team_barrier();  // readers of the scratch the store overwrites are done
      store_stage(cu);
      team.team_barrier();
      const Cursor cur = cu;
      have = advance(spans, ns, cu);
      if (have) load_stage(cu);  // in flight during this stage's FMAs
      const Idx k0 = cur.k0;
      const int kn = cur.kn;
      if (cur.st < ns) {
        // ---- S += Q K^T over one 32-dim chunk (QM x 4 per thread) ----
        if (cur.st == 0) {
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) s[a][b] = 0.f;
        }
        // dd = 8 i + c: the swizzle's (dd >> 2) is 2 i + (c >> 2), so each
        // group of 8 dims needs two offsets per float4 read, computed once
        // (per-dd XOR arithmetic cost as many issue slots as the loads).
#if defined(__CUDA_ARCH__)
#pragma unroll(kSUnroll)
#endif
        for (int i = 0; i < kGpuChunk / 8; ++i) {
          const float* qb = qs + 8 * i * kGpuTileQ;
          const float* kb = ks + 8 * i * kGpuTileK;
          int oq[QG][2], ok[2];
          DILATED_GPU_UNROLL
          for (int h = 0; h < 2; ++h) {
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u) oq[u][h] = ((QG * ty + u) ^ (2 * i + h)) << 2;
            ok[h] = (tx ^ (2 * i + h)) << 2;
          }
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 8; ++cc) {
            const int h = cc >> 2;
            float qv[QM];
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u) {
              const GpuFloat4 t =
                  *reinterpret_cast<const GpuFloat4*>(qb + cc * kGpuTileQ + oq[u][h]);
              qv[4 * u] = t.x, qv[4 * u + 1] = t.y, qv[4 * u + 2] = t.z, qv[4 * u + 3] = t.w;
            }
            const GpuFloat4 kk = *reinterpret_cast<const GpuFloat4*>(kb + cc * kGpuTileK + ok[h]);
            const float kv[4] = {kk.x, kk.y, kk.z, kk.w};
            DILATED_GPU_UNROLL
            for (int a = 0; a < QM; ++a)
              DILATED_GPU_UNROLL
              for (int b = 0; b < 4; ++b) s[a][b] += qv[a] * kv[b];
          }
        }
        if (cur.st == ns - 1) {
          // ---- online softmax, base 2 (row max over the 16 lanes of the row) ----
          float alpha[QM], smx[QM];
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t qi = q0 + QM * ty + a;
            float mx = m[a];
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) {
              const int j = 4 * tx + b;
              const bool masked = j >= kn || (p.causal && k0 + j > qi);
              const float sv = masked ? -INFINITY : s[a][b] * sl2;
              s[a][b] = sv;
              mx = sv > mx ? sv : mx;
            }
            DILATED_GPU_UNROLL
            for (int mask = 1; mask < kRowLanes; mask <<= 1) {
              const float other = gpu_shfl_xor(mx, mask);
              mx = other > mx ? other : mx;
            }
            smx[a] = mx;
          }
          if constexpr (SPLIT) {
            // The other half of each row is in warp w ^ 1. The previous
            // tile's readers of rmax passed this stage's barriers.
            if ((tx & 7) == 0) {
              DILATED_GPU_UNROLL
              for (int a = 0; a < QM; ++a) rmax[hx * kGpuTileQ + QM * ty + a] = smx[a];
            }
            team.team_barrier();
            DILATED_GPU_UNROLL
            for (int a = 0; a < QM; ++a) {
              const float m0 = rmax[QM * ty + a], m1 = rmax[kGpuTileQ + QM * ty + a];
              smx[a] = m1 > m0 ? m1 : m0;
            }
          }
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const float mx = smx[a];
            // -inf only if every score so far is -inf: 0 as the reference
            // gives exp2 = 0 instead of NaN.
            const float mref = mx == -INFINITY ? 0.f : mx;
            float sum = 0.f;
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) {
              s[a][b] = LEAN ? gpu_exp2_approx(s[a][b] - mref) : gpu_exp2(s[a][b] - mref);
              sum += s[a][b];  // the denominator never sees dropout
            }
            alpha[a] = LEAN ? gpu_exp2_approx(m[a] - mref) : gpu_exp2(m[a] - mref);
            l[a] = l[a] * alpha[a] + sum;
            m[a] = mx;
          }
          if (p.dropout.enabled()) {
            DILATED_GPU_UNROLL
            for (int a = 0; a < QM; ++a) {
              const std::int64_t i = QM * ty + a;
              if (i >= qn) continue;
              const std::int64_t qpos = pos(q0 + i);
              DILATED_GPU_UNROLL
              for (int b = 0; b < 4; ++b) {
                const int j = 4 * tx + b;
                if (j < kn && s[a][b] != 0.f)
                  s[a][b] *= static_cast<float>(p.dropout.factor(c.b, c.h, qpos, pos(k0 + j), br));
              }
            }
          }
          // P^T: the previous tile's readers of pt finished before this
          // tile's first barrier.
          DILATED_GPU_UNROLL
          for (int b = 0; b < 4; ++b) {
            const int j = 4 * tx + b;
            float* prow = pt + j * kGpuTileQ;
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u)
              *reinterpret_cast<GpuFloat4*>(prow + gpu_swz4(j, QG * ty + u)) =
                  GpuFloat4{s[4 * u][b], s[4 * u + 1][b], s[4 * u + 2][b], s[4 * u + 3][b]};
          }
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int e = 0; e < DN; ++e) o[a][e] *= alpha[a];
        }
      } else {
        // ---- O += P V over one chunk of VC keys ----
        const int j0 = (cur.st - ns) * VC;
        const int jn = kn - j0 < VC ? kn - j0 : VC;
        // Keys in groups of 4 (j0 is a multiple of 4): one swizzle offset per
        // group. A ragged last group reads P^T rows and V rows past kn, which
        // hold P = 0 (masked scores) and V = 0 (staged zeros): they add 0.
#if defined(__CUDA_ARCH__)
#pragma unroll(kPVUnroll)
#endif
        for (int jg = 0; jg < jn; jg += 4) {
          int op[QG];
          DILATED_GPU_UNROLL
          for (int u = 0; u < QG; ++u) op[u] = ((QG * ty + u) ^ ((j0 + jg) >> 2)) << 2;
          const float* pb = pt + (j0 + jg) * kGpuTileQ;
          const float* vb = vs + jg * DMAX;
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc) {
            float pv[QM];
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u) {
              const GpuFloat4 t =
                  *reinterpret_cast<const GpuFloat4*>(pb + cc * kGpuTileQ + op[u]);
              pv[4 * u] = t.x, pv[4 * u + 1] = t.y, pv[4 * u + 2] = t.z, pv[4 * u + 3] = t.w;
            }
            float vv[DN];
            const float* vrow = vb + cc * DMAX;
            if constexpr (DN % 4 == 0) {
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; e += 4) {
                const GpuFloat4 t =
                    *reinterpret_cast<const GpuFloat4*>(vrow + Base::dim_of(tx, e));
                vv[e] = t.x, vv[e + 1] = t.y, vv[e + 2] = t.z, vv[e + 3] = t.w;
              }
            } else {
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) vv[e] = vrow[Base::dim_of(tx, e)];
            }
            DILATED_GPU_UNROLL
            for (int a = 0; a < QM; ++a)
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) o[a][e] += pv[a] * vv[e];
          }
        }
        if (cur.st == cur.nst - 1 && *vany != 0.f) {  // non-finite V: visible pairs only
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t i = QM * ty + a;
            if (i >= qn) continue;
            const std::int64_t jend = p.causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
            for (std::int64_t j = 0; j < jend; ++j) {
              if (vbad[j] == 0.f) continue;
              const float pij =
                  pt[j * kGpuTileQ + gpu_swz(static_cast<int>(j), static_cast<int>(i))];
              const float* src = &v(c.b, p.k_row(pos(k0 + j)), c.h, 0);
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) {
                const std::int64_t x = Base::dim_of(tx, e);
                if (x >= d) continue;
                const float vx = src[x * vxs];
                if (vx * 0.f != 0.f) o[a][e] += pij * vx;
              }
            }
          }
        }
      }
    }
    // ---- merge this branch into the running (out, lse): Eq. 10 by LSE ----
    const float oscale = static_cast<float>(p.output_scale);
    float lse_old[QM];
    std::int64_t prow[QM];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      DILATED_GPU_UNROLL
      for (int mask = 1; mask < kRowLanes; mask <<= 1) l[a] += gpu_shfl_xor(l[a], mask);
      if (SPLIT && (tx & 7) == 0) rsum[hx * kGpuTileQ + QM * ty + a] = l[a];
      const std::int64_t i = QM * ty + a;
      prow[a] = i < qn ? p.q_row(pos(q0 + i)) : 0;
      lse_old[a] = i < qn ? lse(c.b, c.h, prow[a]) : 0.f;
    }
    team.team_barrier();  // every thread of a row has read its old lse
    if constexpr (SPLIT) {
      // Both halves in the same order: every thread of a row gets the same l.
      DILATED_GPU_UNROLL
      for (int a = 0; a < QM; ++a) l[a] = rsum[QM * ty + a] + rsum[kGpuTileQ + QM * ty + a];
    }
    const std::int64_t os = out.stride[3];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      const std::int64_t i = QM * ty + a;
      // l == 0 only when every score was -inf: the branch adds nothing.
      // (A NaN l falls through, so NaN inputs propagate to their row.)
      if (i >= qn || l[a] == 0.f) continue;
      const float lse_b = m[a] * 0.6931471805599453f + math_log(l[a]);  // m is base 2
      float w_old = 0.f, w_new = 1.f, lse_new = lse_b;
      if (lse_old[a] != -INFINITY) {
        const float hi = lse_old[a] > lse_b ? lse_old[a] : lse_b;
        const float lo = lse_old[a] > lse_b ? lse_b : lse_old[a];
        lse_new = hi + math_log1p(math_exp(lo - hi));
        w_old = math_exp(lse_old[a] - lse_new);
        w_new = math_exp(lse_b - lse_new);
      }
      const float f = oscale * w_new / l[a];
      float* dst = &out(c.b, prow[a], c.h, 0);
      DILATED_GPU_UNROLL
      for (int e = 0; e < DN; ++e) {
        const std::int64_t x = Base::dim_of(tx, e);
        if (x >= d) continue;
        float& dv = dst[x * os];
        dv = w_old == 0.f ? f * o[a][e] : dv * w_old + f * o[a][e];
      }
      if (tx == 0) lse(c.b, c.h, prow[a]) = lse_new;
    }
  }
};

}  // namespace details
}  // namespace dilated

#undef DILATED_GPU_UNROLL

#endif  // KOKKOS_ENABLE_CUDA
