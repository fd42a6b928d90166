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
//   * DQ: a team owns a query tile and streams key tiles -> dq
//   * DKV: a team owns a key tile and streams query tiles -> dk, dv
#pragma once

#include "dilated/details/kernel_params.hpp"
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

template <class ExecSpace, class T>
struct BackwardDQKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T> t;
  KernelParams p;
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t d = p.head_dim, tq = p.tile_q, tk = p.tile_k;
    return Scratch::shmem_size(tq * d) * 3 + Scratch::shmem_size(tk * d) * 2 +
           Scratch::shmem_size(tq) * 2;
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
    const std::int64_t d = p.head_dim, tq = p.tile_q, tk = p.tile_k;

    Scratch qs(team.team_scratch(p.scratch_level), tq * d), dos(team.team_scratch(p.scratch_level), tq * d),
        dqs(team.team_scratch(p.scratch_level), tq * d);
    Scratch ks(team.team_scratch(p.scratch_level), tk * d), vs(team.team_scratch(p.scratch_level), tk * d);
    Scratch lrow(team.team_scratch(p.scratch_level), tq), drow(team.team_scratch(p.scratch_level), tq);
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn * d), [&](const std::int64_t idx) {
      const std::int64_t i = idx / d, x = idx % d;
      const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
      qs(idx) = static_cast<Acc>(t.q(c.b, pos, c.h, x));
      dos(idx) = oscale * static_cast<Acc>(t.dout(c.b, pos, c.h, x));  // dO_true
      dqs(idx) = 0;
      if (x == 0) {
        lrow(i) = t.lse(c.b, c.h, pos);
        drow(i) = t.delta(c.b, c.h, pos);
      }
    });
    const std::int64_t kend = key_range_end(p.causal, n, q0, qn);
    const Acc scale = static_cast<Acc>(p.scale);
    for (std::int64_t k0 = 0; k0 < kend; k0 += tk) {
      const std::int64_t kn = kend - k0 < tk ? kend - k0 : tk;
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn * d), [&](const std::int64_t idx) {
        const std::int64_t j = idx / d, x = idx % d;
        const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
        ks(idx) = static_cast<Acc>(t.k(c.b, pos, c.h, x));
        vs(idx) = static_cast<Acc>(t.v(c.b, pos, c.h, x));
      });
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
        const Acc* qrow = &qs(i * d);
        const Acc* dorow = &dos(i * d);
        Acc* dqrow = &dqs(i * d);
        const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i);
        for (std::int64_t j = 0; j < kn; ++j) {
          if (p.causal && k0 + j > q0 + i) break;
          const Acc* krow = &ks(j * d);
          const Acc* vrow = &vs(j * d);
          Acc s = 0, dp = 0;
          for (std::int64_t x = 0; x < d; ++x) {
            s += qrow[x] * krow[x];
            dp += dorow[x] * vrow[x];
          }
          const Acc prob = math_exp(s * scale - lrow(i));
          Acc z = 1;
          if (p.dropout.enabled())
            z = static_cast<Acc>(p.dropout.factor(c.b, c.h, qpos,
                                                  p.pattern.position(br, c.s, off, k0 + j), br));
          const Acc ds = prob * (z * dp - drow(i)) * scale;
          for (std::int64_t x = 0; x < d; ++x) dqrow[x] += ds * krow[x];
        }
      });
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn * d), [&](const std::int64_t idx) {
      const std::int64_t i = idx / d, x = idx % d;
      T& g = t.dq(c.b, p.pattern.position(br, c.s, off, q0 + i), c.h, x);
      g = static_cast<T>(static_cast<Acc>(g) + dqs(idx));
    });
  }
};

template <class ExecSpace, class T>
struct BackwardDKVKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T> t;
  KernelParams p;  // tile_k rows of keys per team; tile_q query rows per step
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t d = p.head_dim, tq = p.tile_q, tk = p.tile_k;
    return Scratch::shmem_size(tk * d) * 4 + Scratch::shmem_size(tq * d) * 2 +
           Scratch::shmem_size(tq) * 2;
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
    const std::int64_t d = p.head_dim, tq = p.tile_q, tk = p.tile_k;

    Scratch ks(team.team_scratch(p.scratch_level), tk * d), vs(team.team_scratch(p.scratch_level), tk * d),
        dks(team.team_scratch(p.scratch_level), tk * d), dvs(team.team_scratch(p.scratch_level), tk * d);
    Scratch qs(team.team_scratch(p.scratch_level), tq * d), dos(team.team_scratch(p.scratch_level), tq * d);
    Scratch lrow(team.team_scratch(p.scratch_level), tq), drow(team.team_scratch(p.scratch_level), tq);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn * d), [&](const std::int64_t idx) {
      const std::int64_t j = idx / d, x = idx % d;
      const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
      ks(idx) = static_cast<Acc>(t.k(c.b, pos, c.h, x));
      vs(idx) = static_cast<Acc>(t.v(c.b, pos, c.h, x));
      dks(idx) = 0;
      dvs(idx) = 0;
    });
    const Acc scale = static_cast<Acc>(p.scale);
    const Acc oscale = static_cast<Acc>(p.output_scale);
    for (std::int64_t q0 = query_range_begin(p.causal, k0); q0 < n; q0 += tq) {
      const std::int64_t qn = n - q0 < tq ? n - q0 : tq;
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn * d), [&](const std::int64_t idx) {
        const std::int64_t i = idx / d, x = idx % d;
        const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
        qs(idx) = static_cast<Acc>(t.q(c.b, pos, c.h, x));
        dos(idx) = oscale * static_cast<Acc>(t.dout(c.b, pos, c.h, x));
        if (x == 0) {
          lrow(i) = t.lse(c.b, c.h, pos);
          drow(i) = t.delta(c.b, c.h, pos);
        }
      });
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn), [&](const std::int64_t j) {
        const Acc* krow = &ks(j * d);
        const Acc* vrow = &vs(j * d);
        Acc* dkrow = &dks(j * d);
        Acc* dvrow = &dvs(j * d);
        const std::int64_t kpos = p.pattern.position(br, c.s, off, k0 + j);
        for (std::int64_t i = 0; i < qn; ++i) {
          if (p.causal && q0 + i < k0 + j) continue;
          const Acc* qrow = &qs(i * d);
          const Acc* dorow = &dos(i * d);
          Acc s = 0, dp = 0;
          for (std::int64_t x = 0; x < d; ++x) {
            s += qrow[x] * krow[x];
            dp += dorow[x] * vrow[x];
          }
          const Acc prob = math_exp(s * scale - lrow(i));
          Acc z = 1;
          if (p.dropout.enabled())
            z = static_cast<Acc>(p.dropout.factor(
                c.b, c.h, p.pattern.position(br, c.s, off, q0 + i), kpos, br));
          const Acc pz = prob * z;
          const Acc ds = prob * (z * dp - drow(i)) * scale;
          for (std::int64_t x = 0; x < d; ++x) {
            dvrow[x] += pz * dorow[x];
            dkrow[x] += ds * qrow[x];
          }
        }
      });
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn * d), [&](const std::int64_t idx) {
      const std::int64_t j = idx / d, x = idx % d;
      const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
      T& gk = t.dk(c.b, pos, c.h, x);
      gk = static_cast<T>(static_cast<Acc>(gk) + dks(idx));
      T& gv = t.dv(c.b, pos, c.h, x);
      gv = static_cast<T>(static_cast<Acc>(gv) + dvs(idx));
    });
  }
};

}  // namespace details
}  // namespace dilated
