// dilated/details/forward_kernel_gpu_async.hpp - the GPU-shaped forward with
// a resident Q tile and K / V streamed by asynchronous copies.
//
// Same semantics as ForwardBranchKernelGpu / ...Pipelined (read their
// headers first): key spans (windows, block-sparse runs), causal by sparse
// index, dropout on P after the row sum, non-finite V elements kept out of
// the product and added back for visible pairs only, base-2 online softmax,
// the same log-sum-exp merge into (out, lse). What differs, and why:
// - A team of 128 threads owns a tile of kGpuAsyncTileQ = 32 queries (not
//   64). Thread (ty, tx) = (rank / 16, rank % 16) keeps the pipelined
//   256-thread kernel's register blocks (4 queries x 4 keys of S, 4 queries
//   x DMAX / 16 dims of O), so the per-FMA shared-memory traffic is the same.
// - The Q tile (32 x DMAX, 16 KiB at d = 128) stays in scratch for the
//   team's whole key loop: the pipelined kernels restage a 64-query Q chunk
//   with every key tile (a third of their staging). That fits the 48 KiB a
//   Kokkos 4.6 CUDA team may use only with a 32-query tile (Q 16 KiB + P^T
//   8 KiB + two 8 KiB stages).
// - K chunks (64 keys x 32 dims) and V chunks (16 rows at d = 128) go
//   global -> scratch by cp.async (sm_80+), double-buffered: the next
//   stage's copy is issued right after the barrier that frees its buffer, so
//   it needs no registers (the pipelined kernels hold it in 16 registers and
//   spill under the 128-register cap) and no store instructions, and each
//   stage costs one barrier of 4 warps instead of two of 8. Rows past the
//   tile and dims past head_dim are zero-filled by the copy itself
//   (src-size < 16). Tensors whose rows are not contiguous, 16-byte aligned
//   float4s (vec4 false) take plain loads and stores instead.
// - Scratch tiles are row-major ([row][dims]) with the float4 index XORed by
//   (row / 4) so a warp's float4 reads of 16 K rows (4 tx + b) or of two Q
//   rows hit distinct bank groups; V rows are read as float4 groups tx +
//   16 i (conflict-free unswizzled); P^T is [key][query] swizzled the same way.
// - Non-finite V: after its copy lands each thread checks the float4s it
//   copied (one FMA chain * 0), zeroes bad elements and flags the row before
//   the stage's barrier. The flags are double-buffered by key-tile parity so
//   the reset of the next tile's set needs no extra barrier.
// MINB: teams per SM that __launch_bounds__ must allow (4: 128 registers,
// 3: 168).
// Measured (H100, LongNet d128 fp32 1M x 16, perf_tests/results/
// h100-portable-2026-11-27d-gpu-forward/): MINB 3 ("async128x3") 21.3
// TFLOP/s, MINB 4 ("async128") 20.1, pipe256 22.5 in the same call - slower
// with FMA loops like pipe256's (SASS: 572 / 647 instructions per 512 FMAs of
// a PV / S stage) and the same shared-memory wavefronts per FMA. ptxas, d =
// 128: MINB 4 spills 592 / 776 bytes (stores / loads), MINB 3 344 / 344,
// none inside the FMA loops; 4 teams of 4 warps lose to 3 (suggesting per-warp
// registers, i.e. load-ahead depth, matter more than warps), and 12 warps per
// SM lose to pipe256's 16 (the 32-query tile also costs 8 stages per 4096
// FMAs a thread instead of 6). Kept selectable: the resident-Q,
// asynchronous-copy shape is the one to revisit where a team may use more
// than 48 KiB (64-query tiles, deeper pipelines).
#pragma once

#include "dilated/details/forward_kernel_gpu.hpp"

#if defined(KOKKOS_ENABLE_CUDA)

#if defined(__CUDA_ARCH__)
#define DILATED_GPU_UNROLL _Pragma("unroll")
#else
#define DILATED_GPU_UNROLL
#endif

namespace dilated {
namespace details {

constexpr int kGpuAsyncTileQ = 32;

// 16 bytes global -> shared without registers; `bytes` (0, 4, 8, 12 or 16)
// are read from src, the rest of the 16 zero-filled. src must be 16-byte
// aligned and valid even when bytes == 0.
KOKKOS_INLINE_FUNCTION void gpu_cp_async16(float* dst, const float* src, int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes)
               : "memory");
#else
  for (int i = 0; i < 4; ++i) dst[i] = 4 * i < bytes ? src[i] : 0.f;
#endif
}
KOKKOS_INLINE_FUNCTION void gpu_cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// This thread's copies have landed (other threads': after a barrier).
KOKKOS_INLINE_FUNCTION void gpu_cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

template <int DMAX, int MINB>
struct ForwardBranchKernelGpuAsync {
  static_assert(DMAX % 16 == 0 && DMAX <= kGpuMaxHeadDim, "DMAX: 16, 32, 64 or 128");
  static constexpr int NT = 128;
  static constexpr int TQ = kGpuAsyncTileQ;
  static constexpr int TK = kGpuTileK;
  static constexpr int QM = TQ * 16 / NT;  // queries per thread (4)
  static constexpr int DN = DMAX / 16;     // O dims per thread
  static constexpr int KC = DMAX < kGpuChunk ? DMAX : kGpuChunk;  // dims of a K stage
  static constexpr int KF = KC / 4;        // float4 of a K stage row
  static constexpr int DF = DMAX / 4;      // float4 of a Q / V row
  static constexpr int SF = TK * KF;       // float4 of a stage (K chunk or V rows)
  static constexpr int VR = SF / DF;       // V rows of a stage
  static constexpr int NLA = SF / NT;      // float4 a thread copies per stage
  static constexpr int QF = TQ * DF / NT;  // float4 of Q a thread copies
  static constexpr int QSW = DF < 8 ? DF - 1 : 7;  // Q swizzle mask
  static_assert(QM == 4 && TK == 64 && VR % 4 == 0 && VR <= TK && SF % NT == 0,
                "tile shapes");
  using Base = ForwardBranchKernelGpu<DMAX, NT>;
  using member_type = typename Kokkos::TeamPolicy<Kokkos::Cuda,
                                                  Kokkos::LaunchBounds<NT, MINB>>::member_type;

  TensorRef<const float, 4> q, k, v;
  TensorRef<float, 4> out;
  TensorRef<float, 3> lse;
  KernelParams p;
  bool vec4 = false;
  std::int64_t league_offset = 0;

  // Q tile, 2 stages, P^T, V flags [2][64] + any [2] (+ 2 floats padding),
  // + 16 bytes for get_shmem_aligned.
  KOKKOS_INLINE_FUNCTION static constexpr std::size_t scratch_bytes() {
    return sizeof(float) * (TQ * DMAX + 2 * SF * 4 + TK * TQ + 2 * TK + 4) + 16;
  }

  struct Cursor {
    std::int64_t sp, k0, kend;
    int kn, st, nst, par;  // par: key-tile parity (which V flag set)
  };
  KOKKOS_INLINE_FUNCTION bool next_tile(const Spans& spans, int ns, Cursor& cu) const {
    cu.k0 += TK;
    while (cu.k0 >= cu.kend) {
      if (++cu.sp >= spans.count) return false;
      spans.get(cu.sp, &cu.k0, &cu.kend);
    }
    cu.kn = static_cast<int>(cu.kend - cu.k0 < TK ? cu.kend - cu.k0 : TK);
    cu.st = 0;
    cu.nst = ns + (cu.kn + VR - 1) / VR;
    cu.par ^= 1;
    return true;
  }
  KOKKOS_INLINE_FUNCTION bool advance(const Spans& spans, int ns, Cursor& cu) const {
    if (++cu.st < cu.nst) return true;
    return next_tile(spans, ns, cu);
  }

  // dst[0..3] = row[x0 .. x0 + 3] (0 past head_dim or when !ok); asynchronous
  // for vec4 tensors. base: any valid 16-byte aligned address of the tensor.
  KOKKOS_INLINE_FUNCTION void copy4(float* dst, const float* row, std::int64_t x0, bool ok,
                                    std::int64_t xs, const float* base) const {
    const std::int64_t d = p.head_dim;
    if (vec4) {
      const int nb = !ok || x0 >= d ? 0 : x0 + 4 <= d ? 16 : static_cast<int>(d - x0) * 4;
      gpu_cp_async16(dst, nb ? row + x0 : base, nb);
      return;
    }
    GpuFloat4 t{0.f, 0.f, 0.f, 0.f};
    if (ok) {
      if (x0 < d) t.x = row[x0 * xs];
      if (x0 + 1 < d) t.y = row[(x0 + 1) * xs];
      if (x0 + 2 < d) t.z = row[(x0 + 2) * xs];
      if (x0 + 3 < d) t.w = row[(x0 + 3) * xs];
    }
    *reinterpret_cast<GpuFloat4*>(dst) = t;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, TQ);
    if (rows.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = rows.offset, q0 = rows.begin, qn = rows.count;
    const std::int64_t d = p.head_dim;
    const int ns = static_cast<int>((d + KC - 1) / KC);
    const int rank = team.team_rank();
    const int ty = rank >> 4, tx = rank & 15;

    float* const smem =
        static_cast<float*>(team.team_scratch(0).get_shmem_aligned(scratch_bytes(), 16));
    float* const qsm = smem;                   // [TQ][DF] float4, swizzled
    float* const stg = qsm + TQ * DMAX;        // 2 x [SF] float4: K chunk or V rows
    float* const pt = stg + 2 * SF * 4;        // [TK][TQ / 4] float4, swizzled P^T
    float* const vbad = pt + TK * TQ;          // [2][TK] V row has a non-finite element
    float* const vany = vbad + 2 * TK;         // [2] any of them

    const float sl2 = static_cast<float>(p.scale * 1.4426950408889634);
    float o[QM][DN];
    float m[QM], l[QM], s[QM][4];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      m[a] = -INFINITY;
      l[a] = 0.f;
      DILATED_GPU_UNROLL
      for (int e = 0; e < DN; ++e) o[a][e] = 0.f;
    }
    const auto pos = [&](std::int64_t j) { return p.pattern.position(br, c.s, off, j); };
    const std::int64_t dil = p.pattern.dilation[br];

    // Q: rows linear in the sparse index (position = base + j * r).
    {
      const float* const qrow0 = &q(c.b, p.q_row(pos(q0)), c.h, 0);
      DILATED_GPU_UNROLL
      for (int i = 0; i < QF; ++i) {
        const int f = rank + i * NT, r = f / DF, g = f % DF;
        copy4(qsm + 4 * (r * DF + (g ^ ((r >> 2) & QSW))), qrow0 + r * dil * q.stride[1], 4 * g,
              r < qn, q.stride[3], q.data);
      }
    }
    // Stage cu's copies into buffer b.
    const auto issue = [&](const Cursor& cu, float* b) {
      if (cu.st < ns) {
        const std::int64_t x0 = static_cast<std::int64_t>(cu.st) * KC;
        const float* const krow0 = &k(c.b, p.k_row(pos(cu.k0)), c.h, 0);
        const std::int64_t rs = dil * k.stride[1];
        DILATED_GPU_UNROLL
        for (int i = 0; i < NLA; ++i) {
          const int f = rank + i * NT, j = f / KF, g = f % KF;
          copy4(b + 4 * (j * KF + (g ^ ((j >> 2) & (KF - 1)))), krow0 + j * rs, x0 + 4 * g,
                j < cu.kn, k.stride[3], k.data);
        }
      } else {
        const int j0 = (cu.st - ns) * VR;
        const float* const vrow0 = &v(c.b, p.k_row(pos(cu.k0 + j0)), c.h, 0);
        const std::int64_t rs = dil * v.stride[1];
        DILATED_GPU_UNROLL
        for (int i = 0; i < NLA; ++i) {
          const int f = rank + i * NT, jj = f / DF, g = f % DF;
          copy4(b + 4 * f, vrow0 + jj * rs, 4 * g, j0 + jj < cu.kn, v.stride[3], v.data);
        }
      }
    };
    // After the copy of V stage cu landed: this thread's float4s, non-finite
    // elements out of the product, their rows flagged (before the barrier).
    const auto check_v = [&](const Cursor& cu, float* b) {
      const int j0 = (cu.st - ns) * VR;
      DILATED_GPU_UNROLL
      for (int i = 0; i < NLA; ++i) {
        const int f = rank + i * NT, jj = f / DF;
        GpuFloat4& t = *reinterpret_cast<GpuFloat4*>(b + 4 * f);
        const float z = t.x * 0.f + t.y * 0.f + t.z * 0.f + t.w * 0.f;  // NaN iff any is
        if (z != 0.f) {
          float e[4] = {t.x, t.y, t.z, t.w};
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc)
            if (e[cc] * 0.f != 0.f) e[cc] = 0.f;
          t = GpuFloat4{e[0], e[1], e[2], e[3]};
          vbad[cu.par * TK + j0 + jj] = 1.f;
          vany[cu.par] = 1.f;
        }
      }
    };

    const Spans spans =
        key_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, q0, qn);
    Cursor cu{-1, 0, 0, 0, 0, 0, 1};
    cu.k0 = -TK;  // next_tile's first step lands on the first span's start
    cu.kend = 0;
    if (rank < 2 * TK) vbad[rank] = 0.f;
    if (rank < 2) vany[rank] = 0.f;
    bool have = next_tile(spans, ns, cu);
    if (have) issue(cu, stg);
    gpu_cp_async_commit();
    int bi = 0;
    while (have) {
      gpu_cp_async_wait_all();
      if (cu.st >= ns) check_v(cu, stg + bi * SF * 4);
      team.team_barrier();  // stage cu visible; readers of the other buffer done
      const Cursor cur = cu;
      const float* const b = stg + bi * SF * 4;
      have = advance(spans, ns, cu);
      if (have) issue(cu, stg + (bi ^ 1) * SF * 4);  // lands under this stage's FMAs
      gpu_cp_async_commit();
      bi ^= 1;
      const std::int64_t k0 = cur.k0;
      const int kn = cur.kn;
      if (cur.st < ns) {
        // ---- S += Q K^T over one chunk of KC dims (4 x 4 per thread) ----
        if (cur.st == 0) {
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int bb = 0; bb < 4; ++bb) s[a][bb] = 0.f;
          // The next key tile's V flags: their last readers (the fix-up two
          // tiles back) passed this stage's barrier, their writers (that
          // tile's V stages) come after at least one more.
          if (rank < TK) vbad[(cur.par ^ 1) * TK + rank] = 0.f;
          if (rank == TK) vany[cur.par ^ 1] = 0.f;
        }
        const float* const kb = b + 4 * (4 * tx) * KF;
        const float* const qb = qsm + 4 * (4 * ty) * DF;
        const int swk = tx & (KF - 1), swq = ty & QSW;
        DILATED_GPU_UNROLL
        for (int g = 0; g < KF; ++g) {
          const int gk = 4 * (g ^ swk), gq = 4 * ((cur.st * KF + g) ^ swq);
          GpuFloat4 kv[4];
          DILATED_GPU_UNROLL
          for (int bb = 0; bb < 4; ++bb)
            kv[bb] = *reinterpret_cast<const GpuFloat4*>(kb + 4 * bb * KF + gk);
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const GpuFloat4 qv = *reinterpret_cast<const GpuFloat4*>(qb + 4 * a * DF + gq);
            DILATED_GPU_UNROLL
            for (int bb = 0; bb < 4; ++bb) {
              float t = s[a][bb];
              t += qv.x * kv[bb].x;
              t += qv.y * kv[bb].y;
              t += qv.z * kv[bb].z;
              t += qv.w * kv[bb].w;
              s[a][bb] = t;
            }
          }
        }
        if (cur.st == ns - 1) {
          // ---- online softmax, base 2 (row max over the 16 lanes of the row) ----
          float alpha[QM];
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t qi = q0 + QM * ty + a;
            float mx = m[a];
            DILATED_GPU_UNROLL
            for (int bb = 0; bb < 4; ++bb) {
              const int j = 4 * tx + bb;
              const bool masked = j >= kn || (p.causal && k0 + j > qi);
              const float sv = masked ? -INFINITY : s[a][bb] * sl2;
              s[a][bb] = sv;
              mx = sv > mx ? sv : mx;
            }
            DILATED_GPU_UNROLL
            for (int mask = 1; mask < 16; mask <<= 1) {
              const float other = gpu_shfl_xor(mx, mask);
              mx = other > mx ? other : mx;
            }
            // -inf only if every score so far is -inf: 0 as the reference
            // gives exp2 = 0 instead of NaN.
            const float mref = mx == -INFINITY ? 0.f : mx;
            float sum = 0.f;
            DILATED_GPU_UNROLL
            for (int bb = 0; bb < 4; ++bb) {
              s[a][bb] = ::exp2f(s[a][bb] - mref);
              sum += s[a][bb];  // the denominator never sees dropout
            }
            alpha[a] = ::exp2f(m[a] - mref);
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
              for (int bb = 0; bb < 4; ++bb) {
                const int j = 4 * tx + bb;
                if (j < kn && s[a][bb] != 0.f)
                  s[a][bb] *=
                      static_cast<float>(p.dropout.factor(c.b, c.h, qpos, pos(k0 + j), br));
              }
            }
          }
          // P^T rows 4 tx + bb, float4 ty (swizzled by row / 4 = tx). The
          // previous tile's readers of pt passed this tile's first barrier.
          DILATED_GPU_UNROLL
          for (int bb = 0; bb < 4; ++bb)
            *reinterpret_cast<GpuFloat4*>(pt + 4 * ((4 * tx + bb) * (TQ / 4) + (ty ^ (tx & 7)))) =
                GpuFloat4{s[0][bb], s[1][bb], s[2][bb], s[3][bb]};
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int e = 0; e < DN; ++e) o[a][e] *= alpha[a];
        }
      } else {
        // ---- O += P V over VR keys; rows past kn hold P = 0 and V = 0 ----
        const int j0 = (cur.st - ns) * VR;
        DILATED_GPU_UNROLL
        for (int jg = 0; jg < VR / 4; ++jg) {
          const int sw = 4 * (ty ^ (((j0 >> 2) + jg) & 7));
          const float* const pb = pt + (j0 + 4 * jg) * TQ + sw;
          const float* const vb = b + 4 * jg * DMAX;
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc) {
            const GpuFloat4 pq = *reinterpret_cast<const GpuFloat4*>(pb + cc * TQ);
            const float pv[4] = {pq.x, pq.y, pq.z, pq.w};
            float vv[DN];
            const float* vrow = vb + cc * DMAX;
            if constexpr (DN % 4 == 0) {
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; e += 4) {
                const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(vrow + Base::dim_of(tx, e));
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
        if (cur.st == cur.nst - 1 && vany[cur.par] != 0.f) {  // non-finite V: visible pairs only
          const float* const vb2 = vbad + cur.par * TK;
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t i = QM * ty + a;
            if (i >= qn) continue;
            const std::int64_t jend = p.causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
            for (std::int64_t j = 0; j < jend; ++j) {
              if (vb2[j] == 0.f) continue;
              const float pij =
                  pt[j * TQ + 4 * ((ty ^ ((static_cast<int>(j) >> 2) & 7))) + a];
              const float* src = &v(c.b, p.k_row(pos(k0 + j)), c.h, 0);
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) {
                const std::int64_t x = Base::dim_of(tx, e);
                if (x >= d) continue;
                const float vx = src[x * v.stride[3]];
                if (vx * 0.f != 0.f) o[a][e] += pij * vx;
              }
            }
          }
        }
      }
    }
    gpu_cp_async_wait_all();  // nothing left in flight at exit (no key tile: Q)
    // ---- merge this branch into the running (out, lse): Eq. 10 by LSE ----
    const float oscale = static_cast<float>(p.output_scale);
    float lse_old[QM];
    std::int64_t prow[QM];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      DILATED_GPU_UNROLL
      for (int mask = 1; mask < 16; mask <<= 1) l[a] += gpu_shfl_xor(l[a], mask);
      const std::int64_t i = QM * ty + a;
      prow[a] = i < qn ? p.q_row(pos(q0 + i)) : 0;
      lse_old[a] = i < qn ? lse(c.b, c.h, prow[a]) : 0.f;
    }
    team.team_barrier();  // every thread of a row has read its old lse
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
