// dilated/details/forward_kernel.hpp - the portable forward pass of one branch.
//
// A team owns a tile of queries of one sparse segment (batch b, head h,
// segment s, tile t). It streams the segment's key tiles through scratch with
// an online softmax (running max m, running sum l, unnormalised accumulator O)
// and never materialises more than a tile x tile score block, so memory is
// O(N). Dilation is index arithmetic (pattern.position), not a gather copy.
// Per key tile: S = Q K^T and O = alpha O + P V are register-blocked tile
// products (tile_gemm.hpp); the softmax uses a vectorised exp.
//
// Branches are processed one after another and each merges into the running
// (out, lse) by log-sum-exp, which is exactly LongNet's Eq. 10: one softmax
// over the multiset union of the branches' keys.
#pragma once

#include <cmath>

#include "dilated/details/fast_exp.hpp"
#include "dilated/details/kernel_params.hpp"
#include "dilated/details/row_ops.hpp"
#include "dilated/details/tile_gemm.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

template <class ExecSpace, class T>
struct ForwardBranchKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;

  TensorRef<const T, 4> q, k, v;
  TensorRef<T, 4> out;
  TensorRef<Acc, 3> lse;  // [batch, heads, seq]
  KernelParams p;
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tq = p.tile_q;
    return Scratch::shmem_size(tq * dp) * 2 + Scratch::shmem_size(kKeyTile * dp) * 2 +
           Scratch::shmem_size(tq * kKeyTile) + Scratch::shmem_size(tq) * 3;
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
    const std::int64_t mq = round_up(qn, kTileMR);  // rows the tile products cover
    constexpr std::int64_t tk = kKeyTile;

    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch qs(scratch, tq * dp), o(scratch, tq * dp);   // [row][dim]
    Scratch kt(scratch, dp * tk);                          // [dim][key]: K transposed
    Scratch vs(scratch, tk * dp);                          // [key][dim]
    Scratch sc(scratch, tq * tk);                          // scores, then probabilities
    Scratch m(scratch, tq), l(scratch, tq), alpha(scratch, tq);

    const Acc scale = static_cast<Acc>(p.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
      Acc* qrow = &qs(i * dp);
      Acc* orow = &o(i * dp);
      if (i < qn) {
        const T* src = &q(c.b, p.pattern.position(br, c.s, off, q0 + i), c.h, 0);
        for (std::int64_t x = 0; x < d; ++x) qrow[x] = static_cast<Acc>(src[x * q.stride[3]]) * scale;
      } else {
        for (std::int64_t x = 0; x < d; ++x) qrow[x] = 0;
      }
      for (std::int64_t x = 0; x < dp; ++x) orow[x] = 0;
      m(i) = -INFINITY;
      l(i) = 0;
    });
    const std::int64_t kend = key_range_end(p.causal, n, q0, qn);
    for (std::int64_t k0 = 0; k0 < kend; k0 += tk) {
      const std::int64_t kn = kend - k0 < tk ? kend - k0 : tk;
      const std::int64_t nk = round_up(kn, kTileNR);  // score columns computed
      team.team_barrier();  // the previous tile's readers are done with kt / vs
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nk), [&](const std::int64_t j) {
        Acc* vrow = &vs(j * dp);
        if (j < kn) {
          const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
          const T* ksrc = &k(c.b, pos, c.h, 0);
          const T* vsrc = &v(c.b, pos, c.h, 0);
          for (std::int64_t x = 0; x < d; ++x) {
            kt(x * tk + j) = static_cast<Acc>(ksrc[x * k.stride[3]]);
            vrow[x] = static_cast<Acc>(vsrc[x * v.stride[3]]);
          }
          for (std::int64_t x = d; x < dp; ++x) vrow[x] = 0;
        } else {  // padding columns of K^T: finite, and masked below
          for (std::int64_t x = 0; x < d; ++x) kt(x * tk + j) = 0;
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mq, nk, d, &qs(0), dp, &kt(0), tk, &sc(0), tk, false);  // S = Q K^T
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
        Acc* srow = &sc(i * tk);
        if (i >= qn) {  // padding rows: no probability mass
          for (std::int64_t j = 0; j < nk; ++j) srow[j] = 0;
          alpha(i) = 1;
          return;
        }
        const std::int64_t last = p.causal ? q0 + i - k0 : kn - 1;  // last visible key
        for (std::int64_t j = 0; j < nk; ++j)
          srow[j] = (j > last || j >= kn) ? Acc(-INFINITY) : srow[j];
        const Acc mx = row_max(srow, nk, m(i));
        // mx is -inf only if every score so far is -inf (inputs of -inf);
        // use 0 as the reference then, so exp() gives 0 instead of NaN.
        const Acc mref = mx == -INFINITY ? Acc(0) : mx;
        for (std::int64_t j = 0; j < nk; ++j) srow[j] = fast_exp(srow[j] - mref);
        const Acc sum = row_sum(srow, nk);  // the denominator never sees dropout
        if (p.dropout.enabled()) {
          const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i);
          for (std::int64_t j = 0; j < kn; ++j)
            if (srow[j] != 0)
              srow[j] *= static_cast<Acc>(p.dropout.factor(
                  c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
        }
        alpha(i) = fast_exp(m(i) - mref);
        l(i) = l(i) * alpha(i) + sum;
        m(i) = mx;
        Acc* orow = &o(i * dp);
        const Acc a = alpha(i);
        for (std::int64_t x = 0; x < dp; ++x) orow[x] *= a;
      });
      team.team_barrier();
      team_tile_gemm(team, mq, dp, kn, &sc(0), tk, &vs(0), dp, &o(0), dp, true);  // O += P V
    }
    team.team_barrier();
    // Merge this branch into the running (out, lse): Eq. 10 by log-sum-exp.
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      // l == 0 only when every score was -inf: the branch adds nothing.
      // (A NaN l falls through, so NaN inputs propagate to their row.)
      if (l(i) == 0) return;
      const std::int64_t pos = p.pattern.position(br, c.s, off, q0 + i);
      const Acc lse_b = m(i) + math_log(l(i));
      const Acc lse_old = lse(c.b, c.h, pos);
      Acc w_old = 0, w_new = 1, lse_new = lse_b;
      if (lse_old != -INFINITY) {
        const Acc hi = lse_old > lse_b ? lse_old : lse_b;
        const Acc lo = lse_old > lse_b ? lse_b : lse_old;
        lse_new = hi + math_log1p(math_exp(lo - hi));
        w_old = math_exp(lse_old - lse_new);
        w_new = math_exp(lse_b - lse_new);
      }
      const Acc f = oscale * w_new / l(i);
      const Acc* orow = &o(i * dp);
      T* dst = &out(c.b, pos, c.h, 0);
      const std::int64_t os = out.stride[3];
      for (std::int64_t x = 0; x < d; ++x) {
        T& dv = dst[x * os];
        dv = static_cast<T>(w_old == 0 ? f * orow[x] : static_cast<Acc>(dv) * w_old + f * orow[x]);
      }
      lse(c.b, c.h, pos) = lse_new;
    });
  }
};

}  // namespace details
}  // namespace dilated
