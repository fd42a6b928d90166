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
// MINB: teams per SM that __launch_bounds__ must allow.
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

KOKKOS_INLINE_FUNCTION float gpu_exp2(float x) { return ::exp2f(x); }

template <int DMAX, int NT, int MINB>
struct ForwardBranchKernelGpuPipelined {
  static_assert(DMAX % 16 == 0 && DMAX <= kGpuMaxHeadDim, "DMAX: 16, 32, 64 or 128");
  static_assert(NT == 128 || NT == 256, "NT: 128 or 256 threads");
  static constexpr int DN = DMAX / 16;
  static constexpr int QM = kGpuTileQ * 16 / NT;  // queries per thread
  static constexpr int QG = QM / 4;
  // Unroll factors of the S and PV loops (256-thread teams: 128 registers,
  // of which the prefetch buffer takes 16).
  static constexpr int kSUnroll = NT == 256 ? 2 : 8;
  static constexpr int kPVUnroll = NT == 256 ? 2 : 4;
  static constexpr int VC = kGpuRegion * 2 / DMAX < kGpuTileK ? kGpuRegion * 2 / DMAX : kGpuTileK;
  static constexpr int NL = kGpuRegion * 2 / 4 / NT;  // float4 loads per thread and stage
  static constexpr int VF = VC * (DMAX / 4);          // float4 of one V chunk (<= NL * NT)
  static_assert(VF <= NL * NT, "a V chunk fits one stage");
  using Base = ForwardBranchKernelGpu<DMAX, NT>;
  using member_type = typename Kokkos::TeamPolicy<Kokkos::Cuda,
                                                  Kokkos::LaunchBounds<NT, MINB>>::member_type;

  TensorRef<const float, 4> q, k, v;
  TensorRef<float, 4> out;
  TensorRef<float, 3> lse;
  KernelParams p;
  bool vec4 = false;
  std::int64_t league_offset = 0;

  KOKKOS_INLINE_FUNCTION static constexpr std::size_t scratch_bytes() {
    return Base::scratch_bytes();
  }

  // Where the team is: span sp (keys [k0, kend) of it left), key tile
  // [k0, k0 + kn), stage st of nst.
  struct Cursor {
    std::int64_t sp, k0, kend;
    int kn, st, nst;
  };

  // Moves to the next non-empty key tile; false past the last span.
  KOKKOS_INLINE_FUNCTION bool next_tile(const Spans& spans, int ns, Cursor& cu) const {
    cu.k0 += kGpuTileK;
    while (cu.k0 >= cu.kend) {
      if (++cu.sp >= spans.count) return false;
      spans.get(cu.sp, &cu.k0, &cu.kend);
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
    const std::int64_t off = rows.offset, q0 = rows.begin, qn = rows.count;
    const std::int64_t d = p.head_dim;
    const int ns = static_cast<int>((d + kGpuChunk - 1) / kGpuChunk);
    const int rank = team.team_rank();
    const int ty = rank >> 4, tx = rank & 15;

    float* const smem =
        static_cast<float*>(team.team_scratch(0).get_shmem_aligned(scratch_bytes(), 16));
    float* const qs = smem;                          // [32][64] swizzled Q^T chunk
    float* const ks = smem + kGpuRegion;             // [32][64] swizzled K^T chunk
    float* const vs = smem;                          // [VC][DMAX] V rows (reuses qs, ks)
    float* const pt = smem + 2 * kGpuRegion;         // [64 keys][64 queries] swizzled P^T
    float* const vbad = pt + kGpuTileK * kGpuTileQ;  // [64] V row has a non-finite element
    float* const vany = vbad + kGpuTileK;            // [1] any of them

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

    // Global -> registers for the stage at `cu`.
    GpuFloat4 buf[NL];
    const auto load_stage = [&](const Cursor& cu) {
      if (cu.st < ns) {
        const std::int64_t d0 = static_cast<std::int64_t>(cu.st) * kGpuChunk;
        DILATED_GPU_UNROLL
        for (int i = 0; i < NL / 2; ++i) {
          const int f = rank + i * NT, j = f >> 3, g = f & 7;
          const GpuFloat4 z{0.f, 0.f, 0.f, 0.f};
          buf[i] = j < qn ? load4(&q(c.b, p.q_row(pos(q0 + j)), c.h, 0), d0 + 4 * g, qxs) : z;
          buf[NL / 2 + i] =
              j < cu.kn ? load4(&k(c.b, p.k_row(pos(cu.k0 + j)), c.h, 0), d0 + 4 * g, kxs) : z;
        }
      } else {
        const int j0 = (cu.st - ns) * VC;
        const int jn = cu.kn - j0 < VC ? cu.kn - j0 : VC;
        DILATED_GPU_UNROLL
        for (int i = 0; i < NL; ++i) {
          const int f = rank + i * NT, jj = f / (DMAX / 4), g = f % (DMAX / 4);
          buf[i] = GpuFloat4{0.f, 0.f, 0.f, 0.f};
          if (f < VF && jj < jn)
            buf[i] = load4(&v(c.b, p.k_row(pos(cu.k0 + j0 + jj)), c.h, 0), 4 * g, vxs);
        }
      }
    };
    // Registers -> scratch (between two barriers).
    const auto store_stage = [&](const Cursor& cu) {
      if (cu.st < ns) {
        DILATED_GPU_UNROLL
        for (int i = 0; i < NL / 2; ++i) {
          const int f = rank + i * NT, j = f >> 3, g = f & 7;
          const float eq[4] = {buf[i].x, buf[i].y, buf[i].z, buf[i].w};
          const float ek[4] = {buf[NL / 2 + i].x, buf[NL / 2 + i].y, buf[NL / 2 + i].z,
                               buf[NL / 2 + i].w};
          DILATED_GPU_UNROLL
          for (int cc = 0; cc < 4; ++cc) {
            const int dd = 4 * g + cc;
            qs[dd * kGpuTileQ + gpu_swz(dd, j)] = eq[cc];
            ks[dd * kGpuTileK + gpu_swz(dd, j)] = ek[cc];
          }
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
    Cursor cu{-1, 0, 0, 0, 0, 0};
    bool have = next_tile(spans, ns, cu);
    if (have) load_stage(cu);
    while (have) {
      team.team_barrier();  // readers of the scratch the store overwrites are done
      store_stage(cu);
      team.team_barrier();
      const Cursor cur = cu;
      have = advance(spans, ns, cu);
      if (have) load_stage(cu);  // in flight during this stage's FMAs
      const std::int64_t k0 = cur.k0;
      const int kn = cur.kn;
      if (cur.st < ns) {
        // ---- S += Q K^T over one 32-dim chunk (QM x 4 per thread) ----
        if (cur.st == 0) {
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) s[a][b] = 0.f;
        }
#if defined(__CUDA_ARCH__)
#pragma unroll(kSUnroll)
#endif
        for (int dd = 0; dd < kGpuChunk; ++dd) {
          const float* qr = qs + dd * kGpuTileQ;
          float qv[QM];
          DILATED_GPU_UNROLL
          for (int u = 0; u < QG; ++u) {
            const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(qr + gpu_swz4(dd, QG * ty + u));
            qv[4 * u] = t.x, qv[4 * u + 1] = t.y, qv[4 * u + 2] = t.z, qv[4 * u + 3] = t.w;
          }
          const GpuFloat4 kk =
              *reinterpret_cast<const GpuFloat4*>(ks + dd * kGpuTileK + gpu_swz4(dd, tx));
          const float kv[4] = {kk.x, kk.y, kk.z, kk.w};
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a)
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) s[a][b] += qv[a] * kv[b];
        }
        if (cur.st == ns - 1) {
          // ---- online softmax, base 2 (row max over the 16 lanes of the row) ----
          float alpha[QM];
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
            for (int mask = 1; mask < 16; mask <<= 1) {
              const float other = gpu_shfl_xor(mx, mask);
              mx = other > mx ? other : mx;
            }
            // -inf only if every score so far is -inf: 0 as the reference
            // gives exp2 = 0 instead of NaN.
            const float mref = mx == -INFINITY ? 0.f : mx;
            float sum = 0.f;
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) {
              s[a][b] = gpu_exp2(s[a][b] - mref);
              sum += s[a][b];  // the denominator never sees dropout
            }
            alpha[a] = gpu_exp2(m[a] - mref);
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
#if defined(__CUDA_ARCH__)
#pragma unroll(kPVUnroll)
#endif
        for (int jj = 0; jj < jn; ++jj) {
          const int j = j0 + jj;
          const float* prow = pt + j * kGpuTileQ;
          float pv[QM];
          DILATED_GPU_UNROLL
          for (int u = 0; u < QG; ++u) {
            const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(prow + gpu_swz4(j, QG * ty + u));
            pv[4 * u] = t.x, pv[4 * u + 1] = t.y, pv[4 * u + 2] = t.z, pv[4 * u + 3] = t.w;
          }
          float vv[DN];
          const float* vrow = vs + jj * DMAX;
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
