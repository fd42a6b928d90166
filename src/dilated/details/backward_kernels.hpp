// dilated/details/backward_kernels.hpp - the portable backward pass of one branch.
//
// The exact gradient of the merged (union-softmax) function: with the final
// LSE L of a query, every (query, key) entry of every branch has probability
// P = exp(s - L), and dS = P * (z * dP - D) with dP = dO_true . v,
// D = rowsum(dout * out) and z the dropout factor. Unlike torchscale, the merge
// weights are not detached: using the *final* L is what makes this exact.
//
// Two kernels per branch, each recomputing P (FlashAttention-2 style), so no
// atomics are needed and results are deterministic:
//   * DQ:  a team owns a query tile, streams key tiles:   dQ += dS K
//   * DKV: a team owns a key tile, streams query tiles:   dV += P^T dO, dK += dS^T Q
// All products are register-blocked tile products (tile_gemm.hpp).
#pragma once

#include "dilated/details/fast_exp.hpp"
#include "dilated/details/kernel_params.hpp"
#include "dilated/details/tile_gemm.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

// Shared inputs of both backward kernels.
template <class T>
struct BackwardTensors {
  using Acc = accum_t<T>;
  TensorRef<const T, 4> q, k, v, dout;
  TensorRef<const Acc, 3> lse, delta;  // [batch, heads, seq]
  TensorRef<T, 4> dq, dk, dv;
};

// Copies row `src` (head_dim d, element stride st) into dst[0, d) and zeroes
// dst[d, dp); `factor` scales the values.
template <class T, class Acc>
KOKKOS_INLINE_FUNCTION void load_row(Acc* dst, const T* src, std::int64_t st, std::int64_t d,
                                     std::int64_t dp, Acc factor) {
  for (std::int64_t x = 0; x < d; ++x) dst[x] = static_cast<Acc>(src[x * st]) * factor;
  for (std::int64_t x = d; x < dp; ++x) dst[x] = 0;
}
// Same, into column j of a transposed tile dst[x * ld + j].
template <class T, class Acc>
KOKKOS_INLINE_FUNCTION void load_col(Acc* dst, std::int64_t ld, std::int64_t j, const T* src,
                                     std::int64_t st, std::int64_t d, Acc factor) {
  for (std::int64_t x = 0; x < d; ++x) dst[x * ld + j] = static_cast<Acc>(src[x * st]) * factor;
}

template <class ExecSpace, class T>
struct BackwardDQKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T> t;
  KernelParams p;
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tq = p.tile_q, tk = kKeyTile;
    return Scratch::shmem_size(tq * dp) * 3 + Scratch::shmem_size(tk * dp) * 3 +
           Scratch::shmem_size(tq * tk) * 2 + Scratch::shmem_size(tq) * 2;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const int br = p.branch;
    if (!p.pattern.active(c.h, br)) return;
    const std::int64_t off = p.pattern.offset(c.h, br);
    const std::int64_t n = p.pattern.kept_count(br, c.s, off);
    const std::int64_t q0 = c.t * p.tile_q;
    if (q0 >= n) return;
    const std::int64_t qn = n - q0 < p.tile_q ? n - q0 : p.tile_q;
    const std::int64_t d = p.head_dim, tq = p.tile_q, dp = round_up(d, kTileNR);
    const std::int64_t mq = round_up(qn, kTileMR);
    constexpr std::int64_t tk = kKeyTile;

    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch qs(scratch, tq * dp), dos(scratch, tq * dp), dqs(scratch, tq * dp);
    Scratch kt(scratch, dp * tk), vt(scratch, dp * tk), ks(scratch, tk * dp);
    Scratch sc(scratch, tq * tk), dpm(scratch, tq * tk);
    Scratch lrow(scratch, tq), drow(scratch, tq);
    const Acc scale = static_cast<Acc>(p.scale);
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
      if (i < qn) {
        const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
        load_row(&qs(i * dp), &t.q(c.b, pos, c.h, 0), t.q.stride[3], d, dp, scale);
        // dO_true = output_scale * dout (see the head-group mode)
        load_row(&dos(i * dp), &t.dout(c.b, pos, c.h, 0), t.dout.stride[3], d, dp, oscale);
        lrow(i) = t.lse(c.b, c.h, pos);
        drow(i) = t.delta(c.b, c.h, pos);
      } else {
        for (std::int64_t x = 0; x < dp; ++x) qs(i * dp + x) = dos(i * dp + x) = 0;
      }
      for (std::int64_t x = 0; x < dp; ++x) dqs(i * dp + x) = 0;
    });
    const std::int64_t kend = key_range_end(p.causal, n, q0, qn);
    for (std::int64_t k0 = 0; k0 < kend; k0 += tk) {
      const std::int64_t kn = kend - k0 < tk ? kend - k0 : tk;
      const std::int64_t nk = round_up(kn, kTileNR);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nk), [&](const std::int64_t j) {
        if (j < kn) {
          const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
          const T* ksrc = &t.k(c.b, pos, c.h, 0);
          load_col(&kt(0), tk, j, ksrc, t.k.stride[3], d, Acc(1));
          load_col(&vt(0), tk, j, &t.v(c.b, pos, c.h, 0), t.v.stride[3], d, Acc(1));
          load_row(&ks(j * dp), ksrc, t.k.stride[3], d, dp, Acc(1));
        } else {
          for (std::int64_t x = 0; x < d; ++x) kt(x * tk + j) = vt(x * tk + j) = 0;
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mq, nk, d, &qs(0), dp, &kt(0), tk, &sc(0), tk, false);    // S (scaled)
      team_tile_gemm(team, mq, nk, d, &dos(0), dp, &vt(0), tk, &dpm(0), tk, false);  // dP
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
        Acc* srow = &sc(i * tk);
        const Acc* dprow = &dpm(i * tk);
        if (i >= qn) {
          for (std::int64_t j = 0; j < nk; ++j) srow[j] = 0;
          return;
        }
        const std::int64_t last = p.causal ? q0 + i - k0 : kn - 1;
        const Acc li = lrow(i), di = drow(i);
        if (!p.dropout.enabled()) {
          for (std::int64_t j = 0; j < nk; ++j) {
            const Acc prob = fast_exp(srow[j] - li);
            srow[j] = (j > last || j >= kn) ? Acc(0) : prob * (dprow[j] - di) * scale;  // dS
          }
        } else {
          const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i);
          for (std::int64_t j = 0; j < nk; ++j) {
            if (j > last || j >= kn) {
              srow[j] = 0;
              continue;
            }
            const Acc z = static_cast<Acc>(p.dropout.factor(
                c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
            srow[j] = fast_exp(srow[j] - li) * (z * dprow[j] - di) * scale;
          }
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mq, dp, kn, &sc(0), tk, &ks(0), dp, &dqs(0), dp, true);  // dQ += dS K
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      T* g = &t.dq(c.b, p.pattern.position(br, c.s, off, q0 + i), c.h, 0);
      const std::int64_t st = t.dq.stride[3];
      for (std::int64_t x = 0; x < d; ++x)
        g[x * st] = static_cast<T>(static_cast<Acc>(g[x * st]) + dqs(i * dp + x));
    });
  }
};

template <class ExecSpace, class T>
struct BackwardDKVKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T> t;
  KernelParams p;  // tile_k rows of keys per team; kKeyTile query rows per step
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tk = p.tile_k, tq = kKeyTile;
    return Scratch::shmem_size(tk * dp) * 4 + Scratch::shmem_size(tq * dp) * 4 +
           Scratch::shmem_size(tk * tq) * 2 + Scratch::shmem_size(tq) * 2;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const int br = p.branch;
    if (!p.pattern.active(c.h, br)) return;
    const std::int64_t off = p.pattern.offset(c.h, br);
    const std::int64_t n = p.pattern.kept_count(br, c.s, off);
    const std::int64_t k0 = c.t * p.tile_k;
    if (k0 >= n) return;
    const std::int64_t kn = n - k0 < p.tile_k ? n - k0 : p.tile_k;
    const std::int64_t d = p.head_dim, tk = p.tile_k, dp = round_up(d, kTileNR);
    const std::int64_t mk = round_up(kn, kTileMR);
    constexpr std::int64_t tq = kKeyTile;  // query rows per step

    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch ks(scratch, tk * dp), vs(scratch, tk * dp), dks(scratch, tk * dp),
        dvs(scratch, tk * dp);
    Scratch qt(scratch, dp * tq), dot(scratch, dp * tq);  // transposed query / dO tiles
    Scratch qs(scratch, tq * dp), dos(scratch, tq * dp);
    Scratch st(scratch, tk * tq), dpt(scratch, tk * tq);  // S^T, dP^T
    Scratch lrow(scratch, tq), drow(scratch, tq);
    const Acc scale = static_cast<Acc>(p.scale);
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mk), [&](const std::int64_t j) {
      if (j < kn) {
        const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
        load_row(&ks(j * dp), &t.k(c.b, pos, c.h, 0), t.k.stride[3], d, dp, Acc(1));
        load_row(&vs(j * dp), &t.v(c.b, pos, c.h, 0), t.v.stride[3], d, dp, Acc(1));
      } else {
        for (std::int64_t x = 0; x < dp; ++x) ks(j * dp + x) = vs(j * dp + x) = 0;
      }
      for (std::int64_t x = 0; x < dp; ++x) dks(j * dp + x) = dvs(j * dp + x) = 0;
    });
    for (std::int64_t q0 = query_range_begin(p.causal, k0); q0 < n; q0 += tq) {
      const std::int64_t qn = n - q0 < tq ? n - q0 : tq;
      const std::int64_t nq = round_up(qn, kTileNR);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nq), [&](const std::int64_t i) {
        if (i < qn) {
          const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
          const T* qsrc = &t.q(c.b, pos, c.h, 0);
          const T* dsrc = &t.dout(c.b, pos, c.h, 0);
          load_col(&qt(0), tq, i, qsrc, t.q.stride[3], d, scale);
          load_col(&dot(0), tq, i, dsrc, t.dout.stride[3], d, oscale);
          load_row(&qs(i * dp), qsrc, t.q.stride[3], d, dp, Acc(1));
          load_row(&dos(i * dp), dsrc, t.dout.stride[3], d, dp, oscale);
          lrow(i) = t.lse(c.b, c.h, pos);
          drow(i) = t.delta(c.b, c.h, pos);
        } else {
          for (std::int64_t x = 0; x < d; ++x) qt(x * tq + i) = dot(x * tq + i) = 0;
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mk, nq, d, &ks(0), dp, &qt(0), tq, &st(0), tq, false);   // S^T
      team_tile_gemm(team, mk, nq, d, &vs(0), dp, &dot(0), tq, &dpt(0), tq, false); // dP^T
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mk), [&](const std::int64_t j) {
        Acc* srow = &st(j * tq);   // becomes P * z
        Acc* dsrow = &dpt(j * tq); // becomes dS
        if (j >= kn) {
          for (std::int64_t i = 0; i < nq; ++i) srow[i] = dsrow[i] = 0;
          return;
        }
        // Causal: query q0 + i sees key k0 + j iff q0 + i >= k0 + j.
        const std::int64_t first = p.causal ? k0 + j - q0 : 0;
        if (!p.dropout.enabled()) {
          for (std::int64_t i = 0; i < nq; ++i) {
            const bool visible = i >= first && i < qn;
            const Acc prob = visible ? fast_exp(srow[i] - lrow(i)) : Acc(0);
            srow[i] = prob;
            dsrow[i] = prob * (dsrow[i] - drow(i)) * scale;
          }
        } else {
          const std::int64_t kpos = p.pattern.position(br, c.s, off, k0 + j);
          for (std::int64_t i = 0; i < nq; ++i) {
            if (!(i >= first && i < qn)) {
              srow[i] = dsrow[i] = 0;
              continue;
            }
            const Acc prob = fast_exp(srow[i] - lrow(i));
            const Acc z = static_cast<Acc>(p.dropout.factor(
                c.b, c.h, p.pattern.position(br, c.s, off, q0 + i), kpos, br));
            srow[i] = prob * z;
            dsrow[i] = prob * (z * dsrow[i] - drow(i)) * scale;
          }
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mk, dp, qn, &st(0), tq, &dos(0), dp, &dvs(0), dp, true);   // dV += P^T dO
      team_tile_gemm(team, mk, dp, qn, &dpt(0), tq, &qs(0), dp, &dks(0), dp, true);  // dK += dS^T Q
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn), [&](const std::int64_t j) {
      const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
      T* gk = &t.dk(c.b, pos, c.h, 0);
      T* gv = &t.dv(c.b, pos, c.h, 0);
      const std::int64_t sk = t.dk.stride[3], sv = t.dv.stride[3];
      for (std::int64_t x = 0; x < d; ++x) {
        gk[x * sk] = static_cast<T>(static_cast<Acc>(gk[x * sk]) + dks(j * dp + x));
        gv[x * sv] = static_cast<T>(static_cast<Acc>(gv[x * sv]) + dvs(j * dp + x));
      }
    });
  }
};

}  // namespace details
}  // namespace dilated
