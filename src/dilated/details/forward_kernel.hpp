// dilated/details/forward_kernel.hpp - the portable forward pass of one branch.
//
// A team owns a tile of queries of one sparse segment (batch b, head h,
// segment s, tile t). It streams the segment's key tiles through scratch with
// an online softmax (running max m, running sum l, unnormalised accumulator)
// and never materialises more than a tile x tile score block, so memory is
// O(N). Dilation is index arithmetic (pattern.position), not a gather copy.
//
// Branches are processed one after another and each merges into the running
// (out, lse) by log-sum-exp, which is exactly LongNet's Eq. 10: one softmax
// over the multiset union of the branches' keys.
#pragma once

#include <cmath>

#include "dilated/details/kernel_params.hpp"
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
    const std::int64_t d = p.head_dim, tq = p.tile_q;
    return Scratch::shmem_size(tq * d) * 2 + Scratch::shmem_size(kKeyTile * d) * 2 +
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
    const std::int64_t d = p.head_dim, tq = p.tile_q;

    Scratch qs(team.team_scratch(p.scratch_level), tq * d);
    Scratch acc(team.team_scratch(p.scratch_level), tq * d);
    Scratch kt(team.team_scratch(p.scratch_level), kKeyTile * d);
    Scratch vs(team.team_scratch(p.scratch_level), kKeyTile * d);
    Scratch m(team.team_scratch(p.scratch_level), tq), l(team.team_scratch(p.scratch_level), tq);

    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      const T* qrow = &q(c.b, p.pattern.position(br, c.s, off, q0 + i), c.h, 0);
      for (std::int64_t x = 0; x < d; ++x) {
        qs(i * d + x) = static_cast<Acc>(qrow[x * q.stride[3]]);
        acc(i * d + x) = 0;
      }
      m(i) = -INFINITY;
      l(i) = 0;
    });
    const std::int64_t kend = key_range_end(p.causal, n, q0, qn);
    const Acc scale = static_cast<Acc>(p.scale);
    for (std::int64_t k0 = 0; k0 < kend; k0 += kKeyTile) {
      const std::int64_t kn = kend - k0 < kKeyTile ? kend - k0 : kKeyTile;
      team.team_barrier();  // previous tile's readers are done with kt/vs
      // Load the key tile transposed (kt[x][j]) and the value tile (vs[j][x]);
      // rows past kn are zero so the fixed-size loops below stay finite.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kKeyTile), [&](const std::int64_t j) {
        Acc* vrow = &vs(j * d);
        if (j < kn) {
          const std::int64_t pos = p.pattern.position(br, c.s, off, k0 + j);
          const T* krow = &k(c.b, pos, c.h, 0);
          const T* vsrc = &v(c.b, pos, c.h, 0);
          const std::int64_t ks = k.stride[3], vstr = v.stride[3];
          for (std::int64_t x = 0; x < d; ++x) {
            kt(x * kKeyTile + j) = static_cast<Acc>(krow[x * ks]);
            vrow[x] = static_cast<Acc>(vsrc[x * vstr]);
          }
        } else {
          for (std::int64_t x = 0; x < d; ++x) {
            kt(x * kKeyTile + j) = 0;
            vrow[x] = 0;
          }
        }
      });
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
        const Acc* qrow = &qs(i * d);
        // Score row s = q_i K^T as rank-1 updates over head_dim into a
        // fixed-size local array: contiguous in j (vectorises without
        // reassociating a reduction) and held in registers across x.
        Acc srow[kKeyTile];
        for (int j = 0; j < kKeyTile; ++j) srow[j] = 0;
        for (std::int64_t x = 0; x < d; ++x) {
          const Acc qx = qrow[x] * scale;
          const Acc* ktx = &kt(x * kKeyTile);
          for (int j = 0; j < kKeyTile; ++j) srow[j] += qx * ktx[j];
        }
        Acc mx = m(i);
        for (int j = 0; j < kKeyTile; ++j) {
          if (j >= kn || (p.causal && k0 + j > q0 + i)) srow[j] = -INFINITY;
          mx = srow[j] > mx ? srow[j] : mx;
        }
        // mx is -inf only if every score so far is -inf (inputs of -inf);
        // use 0 as the reference then, so exp() gives 0 instead of NaN.
        const Acc mref = mx == -INFINITY ? Acc(0) : mx;
        const Acc alpha = math_exp(m(i) - mref);
        Acc sum = 0;
        const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i);
        for (int j = 0; j < kKeyTile; ++j) {
          Acc pj = math_exp(srow[j] - mref);
          sum += pj;  // the softmax denominator never sees dropout
          if (p.dropout.enabled() && pj != 0)
            pj *= static_cast<Acc>(p.dropout.factor(
                c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
          srow[j] = pj;
        }
        l(i) = l(i) * alpha + sum;
        m(i) = mx;
        // acc_i = alpha * acc_i + p V, in register-sized chunks of head_dim.
        Acc* arow = &acc(i * d);
        std::int64_t x0 = 0;
        for (; x0 + kDimChunk <= d; x0 += kDimChunk) {
          Acc a[kDimChunk];
          for (int x = 0; x < kDimChunk; ++x) a[x] = arow[x0 + x] * alpha;
          for (std::int64_t j = 0; j < kn; ++j) {
            const Acc pj = srow[j];
            const Acc* vrow = &vs(j * d + x0);
            for (int x = 0; x < kDimChunk; ++x) a[x] += pj * vrow[x];
          }
          for (int x = 0; x < kDimChunk; ++x) arow[x0 + x] = a[x];
        }
        for (std::int64_t x = x0; x < d; ++x) {  // head_dim % kDimChunk tail
          Acc a = arow[x] * alpha;
          for (std::int64_t j = 0; j < kn; ++j) a += srow[j] * vs(j * d + x);
          arow[x] = a;
        }
      });
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
      const Acc* arow = &acc(i * d);
      for (std::int64_t x = 0; x < d; ++x) {
        T& o = out(c.b, pos, c.h, x);
        o = static_cast<T>(w_old == 0 ? f * arow[x] : static_cast<Acc>(o) * w_old + f * arow[x]);
      }
      lse(c.b, c.h, pos) = lse_new;
    });
  }
};

}  // namespace details
}  // namespace dilated
