// dilated/details/backward_fused_kernel.hpp - one-pass backward of one branch
// for host backends.
//
// A team owns a whole (batch, head, segment): it streams the segment's key
// tiles and, for each, the query tiles that see them, computing S and dP once
// per (query tile, key tile) pair and all three gradients from them:
//   dV += P^T dO,  dK += dS^T Q,  dQ += dS K  (dQ added straight into dq: no other
// team touches these rows in this launch, so no atomics are needed).
// Against the two-kernel scheme of backward_kernels.hpp (which recomputes S and
// dP in both kernels) this does 10 instead of 14 head_dim-long products per
// attended pair. It has one team per segment, too little parallelism for GPUs,
// which keep the two-kernel scheme.
#pragma once

#include "dilated/details/backward_kernels.hpp"

namespace dilated {
namespace details {

template <class ExecSpace, class T>
struct BackwardFusedKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T> t;
  KernelParams p;  // tiles_per_segment == 1: the team owns the whole segment
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tk = p.tile_k, tq = kKeyTile;
    return Scratch::shmem_size(tk * dp) * 5 + Scratch::shmem_size(tq * dp) * 3 +
           Scratch::shmem_size(tq * tk) * 2 + Scratch::shmem_size(tq) * 2;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows seg = tile_rows(p, c, p.pattern.max_kept_count(p.branch));
    if (seg.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = seg.offset, n = seg.kept;
    const std::int64_t d = p.head_dim, tk = p.tile_k, dp = round_up(d, kTileNR);
    constexpr std::int64_t tq = kKeyTile;  // query rows per step

    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch kt(scratch, dp * tk), vt(scratch, dp * tk);     // [dim][key]
    Scratch ks(scratch, tk * dp);                           // [key][dim]
    Scratch dks(scratch, tk * dp), dvs(scratch, tk * dp);   // [key][dim]
    Scratch qs(scratch, tq * dp), dos(scratch, tq * dp);    // [query][dim]
    Scratch dqt(scratch, tq * dp);                          // this step's dQ
    Scratch sc(scratch, tq * tk), dpm(scratch, tq * tk);    // [query][key]
    Scratch lrow(scratch, tq), drow(scratch, tq);
    const Acc scale = static_cast<Acc>(p.scale);
    const Acc oscale = static_cast<Acc>(p.output_scale);

    for (std::int64_t k0 = 0; k0 < n; k0 += tk) {
      const std::int64_t kn = n - k0 < tk ? n - k0 : tk;
      const std::int64_t mk = round_up(kn, kTileMR), nk = round_up(kn, kTileNR);
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
          for (std::int64_t x = 0; x < dp; ++x) ks(j * dp + x) = 0;
        }
        if (j < mk)
          for (std::int64_t x = 0; x < dp; ++x) dks(j * dp + x) = dvs(j * dp + x) = 0;
      });
      for (std::int64_t q0 = query_range_begin(p.causal, k0); q0 < n; q0 += tq) {
        const std::int64_t qn = n - q0 < tq ? n - q0 : tq;
        const std::int64_t mq = round_up(qn, kTileMR);
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
          if (i < qn) {
            const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
            load_row(&qs(i * dp), &t.q(c.b, pos, c.h, 0), t.q.stride[3], d, dp, scale);
            load_row(&dos(i * dp), &t.dout(c.b, pos, c.h, 0), t.dout.stride[3], d, dp, oscale);
            lrow(i) = t.lse(c.b, c.h, pos);
            drow(i) = t.delta(c.b, c.h, pos);
          } else {
            for (std::int64_t x = 0; x < dp; ++x) qs(i * dp + x) = dos(i * dp + x) = 0;
            lrow(i) = drow(i) = 0;
          }
        });
        team.team_barrier();
        team_tile_gemm(team, mq, nk, d, &qs(0), dp, &kt(0), tk, &sc(0), tk, false);    // S
        team_tile_gemm(team, mq, nk, d, &dos(0), dp, &vt(0), tk, &dpm(0), tk, false);  // dP
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
          Acc* srow = &sc(i * tk);    // becomes P z
          Acc* dsrow = &dpm(i * tk);  // becomes dS' = P (z dP - D); dS = scale dS'
          const std::int64_t last = i >= qn ? -1 : (p.causal ? q0 + i - k0 : kn - 1);
          const Acc li = lrow(i), di = drow(i);
          if (!p.dropout.enabled()) {
            for (std::int64_t j = 0; j < nk; ++j) {
              const bool visible = j <= last && j < kn;
              const Acc prob = visible ? fast_exp(srow[j] - li) : Acc(0);
              srow[j] = prob;
              dsrow[j] = prob * (dsrow[j] - di);
            }
          } else {
            const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + (i < qn ? i : 0));
            for (std::int64_t j = 0; j < nk; ++j) {
              if (!(j <= last && j < kn)) {
                srow[j] = dsrow[j] = 0;
                continue;
              }
              const Acc prob = fast_exp(srow[j] - li);
              const Acc z = static_cast<Acc>(p.dropout.factor(
                  c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
              srow[j] = prob * z;
              dsrow[j] = prob * (z * dsrow[j] - di);
            }
          }
        });
        team.team_barrier();
        team_tile_gemm_strided(team, mk, dp, qn, &sc(0), std::int64_t(1), tk, &dos(0), dp,
                               &dvs(0), dp, true);  // dV += P^T dO
        team_tile_gemm_strided(team, mk, dp, qn, &dpm(0), std::int64_t(1), tk, &qs(0), dp,
                               &dks(0), dp, true);  // dK += dS'^T (scale Q)
        team_tile_gemm(team, mq, dp, kn, &dpm(0), tk, &ks(0), dp, &dqt(0), dp, false);  // dS' K
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
          T* g = &t.dq(c.b, p.pattern.position(br, c.s, off, q0 + i), c.h, 0);
          const std::int64_t sd = t.dq.stride[3];
          const Acc* src = &dqt(i * dp);
          for (std::int64_t x = 0; x < d; ++x)
            g[x * sd] = static_cast<T>(static_cast<Acc>(g[x * sd]) + scale * src[x]);
        });
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
  }
};

}  // namespace details
}  // namespace dilated
