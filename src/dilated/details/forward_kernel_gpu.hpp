// dilated/details/forward_kernel_gpu.hpp - the forward pass of one branch,
// shaped for GPUs (Kokkos' CUDA backend), float storage and accumulation.
//
// Compiled only when Kokkos has CUDA. Plan<Kokkos::Cuda> runs, for float
// tensors and head_dim <= 128, this kernel or its software-pipelined
// successor (forward_kernel_gpu_pipelined.hpp, the default) as
// DILATED_PORTABLE_GPU_FORWARD selects (gpu_forward_variant.hpp); "classic",
// double and larger head_dim run ForwardBranchKernel, as host backends do.
//
// Flash-attention-2 style SIMT schedule. A team of 128 threads owns a tile
// of kGpuTileQ = 64 queries (sparse indices of one segment of the branch, as
// ForwardBranchKernel's tiles, see tile_rows) and streams key tiles of
// kGpuTileK = 64 keys. Thread (ty, tx) = (rank / 16, rank % 16) owns queries
// 8 ty .. 8 ty + 7 and, of S = Q K^T, keys 4 tx .. 4 tx + 3 (a 8 x 4 register
// block), and of O DN = DMAX / 16 dims (float4 groups tx, tx + 16, ...; an 8 x DN
// block). The 16 threads of a row are 16 consecutive lanes of one warp: the
// row max is reduced with warp shuffles, the row sum stays per thread (all
// of a row's threads rescale by the same factor) and is reduced once at the
// end. Q and K go through level-0 scratch (shared memory) in chunks of
// kGpuChunk dims, transposed and XOR-swizzled by float4 so both the
// transposing stores and the float4 reads are free of bank conflicts; P goes
// through scratch as P^T for O += P V; V goes through scratch in chunks of
// rows. Everything fits the 48 KiB a Kokkos CUDA team may use (32 KiB).
// Dilation is index arithmetic (pattern.position) in the loads.
//
// Semantics are ForwardBranchKernel's: same tiles' key spans (windows,
// block-sparse runs), causal by sparse index (= by position), dropout on P
// after the row sum, non-finite V elements kept out of the product and added
// back for visible pairs only, and the same log-sum-exp merge into
// (out, lse).
#pragma once

#include <Kokkos_Core.hpp>

#if defined(KOKKOS_ENABLE_CUDA)

#include <cmath>
#include <cstdint>

#include "dilated/details/fast_exp.hpp"
#include "dilated/details/kernel_params.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

constexpr int kGpuTeam = 128;
// Teams per SM the register allocation must allow (__launch_bounds__): 2
// lets ptxas use up to 255 registers per thread.
#ifndef DILATED_GPU_FORWARD_MIN_BLOCKS
#define DILATED_GPU_FORWARD_MIN_BLOCKS 2
#endif
constexpr int kGpuMinBlocks = DILATED_GPU_FORWARD_MIN_BLOCKS;
constexpr int kGpuTileQ = 64;
constexpr int kGpuTileK = 64;
constexpr int kGpuChunk = 32;  // head_dim chunk of the staged Q / K tiles
constexpr int kGpuRegion = kGpuChunk * kGpuTileQ;  // floats of one staged Q or K chunk
constexpr int kGpuMaxHeadDim = 128;

// Register blocks must be indexed by compile-time constants (else they go to
// local memory): their loops are unrolled on the device.
#if defined(__CUDA_ARCH__)
#define DILATED_GPU_UNROLL _Pragma("unroll")
#else
#define DILATED_GPU_UNROLL
#endif

struct alignas(16) GpuFloat4 {
  float x, y, z, w;
};

// Butterfly over the 16 lanes that share a row (lane masks 1..8). Every
// thread of the warp calls it (no divergence around the shuffles).
KOKKOS_INLINE_FUNCTION float gpu_shfl_xor(float v, int mask) {
#if defined(__CUDA_ARCH__)
  return __shfl_xor_sync(0xffffffffu, v, mask);
#else
  (void)mask;
  return v;  // host pass of nvcc; never executed
#endif
}

// Physical column of logical column j (0..63) in row `row` of a 64-column
// swizzled tile: the float4 index is XORed with a function of the row.
KOKKOS_INLINE_FUNCTION int gpu_swz(int row, int j) {
  return ((((j >> 2) ^ (row >> 2)) & 15) << 2) | (j & 3);
}
KOKKOS_INLINE_FUNCTION int gpu_swz4(int row, int g) {  // float4 index g -> physical
  return ((g ^ (row >> 2)) & 15) << 2;
}

// NT: threads per team, 128 (8 queries per thread) or 256 (4 queries).
template <int DMAX, int NT = kGpuTeam>
struct ForwardBranchKernelGpu {
  static_assert(DMAX % 16 == 0 && DMAX <= kGpuMaxHeadDim, "DMAX: 16, 32, 64 or 128");
  static_assert(NT == 128 || NT == 256, "NT: 128 or 256 threads");
  static constexpr int DN = DMAX / 16;
  static constexpr int QM = kGpuTileQ * 16 / NT;  // queries per thread
  static constexpr int QG = QM / 4;               // their float4 groups
  // Unroll factors of the S and PV loops (256-thread teams: 128 registers).
  static constexpr int kSUnroll = NT == 256 ? 4 : 8;
  static constexpr int kPVUnroll = NT == 256 ? 2 : 4;
  static constexpr int VC = kGpuRegion * 2 / DMAX < kGpuTileK ? kGpuRegion * 2 / DMAX : kGpuTileK;
  using member_type =
      typename Kokkos::TeamPolicy<Kokkos::Cuda, Kokkos::LaunchBounds<NT, kGpuMinBlocks>>::member_type;

  TensorRef<const float, 4> q, k, v;
  TensorRef<float, 4> out;
  TensorRef<float, 3> lse;
  KernelParams p;
  bool vec4 = false;  // q, k, v rows are contiguous and 16-byte aligned
  std::int64_t league_offset = 0;

  // Scratch floats: Q chunk + K chunk (reused for V chunks), P^T, V flags + 1.
  // Head dims of thread column tx: float4 groups tx, tx + 16, ... (DN >= 4,
  // conflict-free float4 reads of V rows), else DN consecutive dims.
  KOKKOS_INLINE_FUNCTION static int dim_of(int tx, int e) {
    return DN % 4 == 0 ? (((e >> 2) * 16 + tx) << 2) + (e & 3) : tx * DN + e;
  }

  KOKKOS_INLINE_FUNCTION static constexpr std::size_t scratch_bytes() {
    return sizeof(float) * (2 * kGpuRegion + kGpuTileK * kGpuTileQ + kGpuTileK + 4) + 16;
  }

  // Stages rows [0, 64) x dims [d0, d0 + 32) of a Q or K tile, transposed and
  // swizzled: dst[dd * 64 + gpu_swz(dd, j)]. Rows past `n` and dims past d are 0.
  template <class RowPtr>
  KOKKOS_INLINE_FUNCTION void stage_t(float* dst, int rank, std::int64_t n, std::int64_t d0,
                                      const RowPtr& row_ptr, std::int64_t xstride) const {
    const std::int64_t d = p.head_dim;
    for (int f = rank; f < kGpuTileQ * (kGpuChunk / 4); f += NT) {
      const int j = f >> 3, g = f & 7;
      const std::int64_t x0 = d0 + 4 * g;
      float e[4] = {0.f, 0.f, 0.f, 0.f};
      if (j < n) {
        const float* src = row_ptr(j);
        if (vec4 && x0 + 4 <= d) {
          const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(src + x0);
          e[0] = t.x, e[1] = t.y, e[2] = t.z, e[3] = t.w;
        } else {
          DILATED_GPU_UNROLL
          for (int c = 0; c < 4; ++c)
            if (x0 + c < d) e[c] = src[(x0 + c) * xstride];
        }
      }
      DILATED_GPU_UNROLL
      for (int c = 0; c < 4; ++c) {
        const int dd = 4 * g + c;
        dst[dd * kGpuTileQ + gpu_swz(dd, j)] = e[c];
      }
    }
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, kGpuTileQ);
    if (rows.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = rows.offset, q0 = rows.begin, qn = rows.count;
    const std::int64_t d = p.head_dim;
    const int rank = team.team_rank();
    const int ty = rank >> 4, tx = rank & 15;

    float* const smem =
        static_cast<float*>(team.team_scratch(0).get_shmem_aligned(scratch_bytes(), 16));
    float* const qs = smem;                   // [32][64] swizzled Q^T chunk
    float* const ks = smem + kGpuRegion;      // [32][64] swizzled K^T chunk
    float* const vs = smem;                   // [VC][DMAX] V rows (reuses qs, ks)
    float* const pt = smem + 2 * kGpuRegion;  // [64 keys][64 queries] swizzled P^T
    float* const vbad = pt + kGpuTileK * kGpuTileQ;  // [64] V row has a non-finite element
    float* const vany = vbad + kGpuTileK;            // [1] any of them

    const float scale = static_cast<float>(p.scale);
    float o[QM][DN];
    float m[QM], l[QM];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      m[a] = -INFINITY;
      l[a] = 0.f;
      DILATED_GPU_UNROLL
      for (int e = 0; e < DN; ++e) o[a][e] = 0.f;
    }
    const std::int64_t qxs = q.stride[3], kxs = k.stride[3], vxs = v.stride[3];
    const auto qrow = [&](int j) {
      return &q(c.b, p.q_row(p.pattern.position(br, c.s, off, q0 + j)), c.h, 0);
    };

    const Spans spans =
        key_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, q0, qn);
    for (std::int64_t sp = 0; sp < spans.count; ++sp) {
      std::int64_t kbegin, kend;
      spans.get(sp, &kbegin, &kend);
      for (std::int64_t k0 = kbegin; k0 < kend; k0 += kGpuTileK) {
        const std::int64_t kn = kend - k0 < kGpuTileK ? kend - k0 : kGpuTileK;
        const auto krow = [&](int j) {
          return &k(c.b, p.k_row(p.pattern.position(br, c.s, off, k0 + j)), c.h, 0);
        };
        // ---- S = Q K^T (8 x 4 per thread), head_dim in chunks ----
        float s[QM][4];
        DILATED_GPU_UNROLL
        for (int a = 0; a < QM; ++a)
          DILATED_GPU_UNROLL
          for (int b = 0; b < 4; ++b) s[a][b] = 0.f;
        for (std::int64_t d0 = 0; d0 < d; d0 += kGpuChunk) {
          team.team_barrier();  // readers of the previous chunk / tile are done
          stage_t(qs, rank, qn, d0, qrow, qxs);
          stage_t(ks, rank, kn, d0, krow, kxs);
          if (d0 == 0 && rank <= kGpuTileK) {
            if (rank < kGpuTileK) vbad[rank] = 0.f; else *vany = 0.f;
          }
          team.team_barrier();
#if defined(__CUDA_ARCH__)
#pragma unroll(kSUnroll)
#endif
          for (int dd = 0; dd < kGpuChunk; ++dd) {
            const float* qr = qs + dd * kGpuTileQ;
            float qv[QM];
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u) {
              const GpuFloat4 t =
                  *reinterpret_cast<const GpuFloat4*>(qr + gpu_swz4(dd, QG * ty + u));
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
        }
        // ---- online softmax (row max over the 16 lanes of the row) ----
        float alpha[QM];
        DILATED_GPU_UNROLL
        for (int a = 0; a < QM; ++a) {
          const std::int64_t qi = q0 + QM * ty + a;
          float mx = m[a];
          DILATED_GPU_UNROLL
          for (int b = 0; b < 4; ++b) {
            const int j = 4 * tx + b;
            const bool masked = j >= kn || (p.causal && k0 + j > qi);
            const float sv = masked ? -INFINITY : s[a][b] * scale;
            s[a][b] = sv;
            mx = sv > mx ? sv : mx;
          }
          DILATED_GPU_UNROLL
          for (int mask = 1; mask < 16; mask <<= 1) {
            const float other = gpu_shfl_xor(mx, mask);
            mx = other > mx ? other : mx;
          }
          // mx is -inf only if every score so far is -inf: use 0 as the
          // reference so exp() gives 0 instead of NaN.
          const float mref = mx == -INFINITY ? 0.f : mx;
          float sum = 0.f;
          DILATED_GPU_UNROLL
          for (int b = 0; b < 4; ++b) {
            s[a][b] = fast_exp(s[a][b] - mref);
            sum += s[a][b];  // the denominator never sees dropout
          }
          alpha[a] = fast_exp(m[a] - mref);
          l[a] = l[a] * alpha[a] + sum;
          m[a] = mx;
        }
        if (p.dropout.enabled()) {
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t i = QM * ty + a;
            if (i >= qn) continue;
            const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i);
            DILATED_GPU_UNROLL
            for (int b = 0; b < 4; ++b) {
              const int j = 4 * tx + b;
              if (j < kn && s[a][b] != 0.f)
                s[a][b] *= static_cast<float>(p.dropout.factor(
                    c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
            }
          }
        }
        // P^T[j][i], swizzled by float4 of queries. The last S chunk's
        // barrier already separates these stores from the previous tile's
        // readers of pt.
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
        // ---- O += P V, V in chunks of VC rows ----
        for (int j0 = 0; j0 < kn; j0 += VC) {
          const int jn = kn - j0 < VC ? static_cast<int>(kn - j0) : VC;
          team.team_barrier();  // previous readers of vs (and of qs / ks) are done
          for (int f = rank; f < VC * (DMAX / 4); f += NT) {
            const int jj = f / (DMAX / 4), g = f % (DMAX / 4);
            const std::int64_t x0 = 4 * g;
            float e[4] = {0.f, 0.f, 0.f, 0.f};
            if (jj < jn) {
              const float* src =
                  &v(c.b, p.k_row(p.pattern.position(br, c.s, off, k0 + j0 + jj)), c.h, 0);
              if (vec4 && x0 + 4 <= d) {
                const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(src + x0);
                e[0] = t.x, e[1] = t.y, e[2] = t.z, e[3] = t.w;
              } else {
                DILATED_GPU_UNROLL
                for (int cc = 0; cc < 4; ++cc)
                  if (x0 + cc < d) e[cc] = src[(x0 + cc) * vxs];
              }
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
            }
            *reinterpret_cast<GpuFloat4*>(vs + jj * DMAX + x0) = GpuFloat4{e[0], e[1], e[2], e[3]};
          }
          team.team_barrier();
#if defined(__CUDA_ARCH__)
#pragma unroll(kPVUnroll)
#endif
          for (int jj = 0; jj < jn; ++jj) {
            const int j = j0 + jj;
            const float* prow = pt + j * kGpuTileQ;
            float pv[QM];
            DILATED_GPU_UNROLL
            for (int u = 0; u < QG; ++u) {
              const GpuFloat4 t =
                  *reinterpret_cast<const GpuFloat4*>(prow + gpu_swz4(j, QG * ty + u));
              pv[4 * u] = t.x, pv[4 * u + 1] = t.y, pv[4 * u + 2] = t.z, pv[4 * u + 3] = t.w;
            }
            float vv[DN];
            const float* vrow = vs + jj * DMAX;
            if constexpr (DN % 4 == 0) {
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; e += 4) {
                const GpuFloat4 t = *reinterpret_cast<const GpuFloat4*>(vrow + dim_of(tx, e));
                vv[e] = t.x, vv[e + 1] = t.y, vv[e + 2] = t.z, vv[e + 3] = t.w;
              }
            } else {
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) vv[e] = vrow[dim_of(tx, e)];
            }
            DILATED_GPU_UNROLL
            for (int a = 0; a < QM; ++a)
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) o[a][e] += pv[a] * vv[e];
          }
        }
        if (*vany != 0.f) {  // non-finite V elements: visible pairs only
          DILATED_GPU_UNROLL
          for (int a = 0; a < QM; ++a) {
            const std::int64_t i = QM * ty + a;
            if (i >= qn) continue;
            const std::int64_t jend = p.causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
            for (std::int64_t j = 0; j < jend; ++j) {
              if (vbad[j] == 0.f) continue;
              const float pij = pt[j * kGpuTileQ + gpu_swz(static_cast<int>(j), static_cast<int>(i))];
              const float* src =
                  &v(c.b, p.k_row(p.pattern.position(br, c.s, off, k0 + j)), c.h, 0);
              DILATED_GPU_UNROLL
              for (int e = 0; e < DN; ++e) {
                const std::int64_t x = dim_of(tx, e);
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
    std::int64_t pos[QM];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      DILATED_GPU_UNROLL
      for (int mask = 1; mask < 16; mask <<= 1) l[a] += gpu_shfl_xor(l[a], mask);
      const std::int64_t i = QM * ty + a;
      pos[a] = i < qn ? p.q_row(p.pattern.position(br, c.s, off, q0 + i)) : 0;
      lse_old[a] = i < qn ? lse(c.b, c.h, pos[a]) : 0.f;
    }
    team.team_barrier();  // every thread of a row has read its old lse
    const std::int64_t os = out.stride[3];
    DILATED_GPU_UNROLL
    for (int a = 0; a < QM; ++a) {
      const std::int64_t i = QM * ty + a;
      // l == 0 only when every score was -inf: the branch adds nothing.
      // (A NaN l falls through, so NaN inputs propagate to their row.)
      if (i >= qn || l[a] == 0.f) continue;
      const float lse_b = m[a] + math_log(l[a]);
      float w_old = 0.f, w_new = 1.f, lse_new = lse_b;
      if (lse_old[a] != -INFINITY) {
        const float hi = lse_old[a] > lse_b ? lse_old[a] : lse_b;
        const float lo = lse_old[a] > lse_b ? lse_b : lse_old[a];
        lse_new = hi + math_log1p(math_exp(lo - hi));
        w_old = math_exp(lse_old[a] - lse_new);
        w_new = math_exp(lse_b - lse_new);
      }
      const float f = oscale * w_new / l[a];
      float* dst = &out(c.b, pos[a], c.h, 0);
      DILATED_GPU_UNROLL
      for (int e = 0; e < DN; ++e) {
        const std::int64_t x = dim_of(tx, e);
        if (x >= d) continue;
        float& dv = dst[x * os];
        dv = w_old == 0.f ? f * o[a][e] : dv * w_old + f * o[a][e];
      }
      if (tx == 0) lse(c.b, c.h, pos[a]) = lse_new;
    }
  }
};

}  // namespace details
}  // namespace dilated

#undef DILATED_GPU_UNROLL

#endif  // KOKKOS_ENABLE_CUDA
