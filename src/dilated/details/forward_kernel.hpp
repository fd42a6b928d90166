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
#include "dilated/details/nonfinite_rows.hpp"
#include "dilated/details/row_ops.hpp"
#include "dilated/details/tile_gemm.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

// O: the type `out` is stored as - T, or (16-bit T, several branches) the
// accumulation type, so that the per-branch merge below reads and writes
// float and the plan rounds to T once at the end.
template <class ExecSpace, class T, class O = T>
struct ForwardBranchKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;

  TensorRef<const T, 4> q, k, v;
  TensorRef<O, 4> out;
  TensorRef<Acc, 3> lse;  // [batch, heads, seq]
  KernelParams p;
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tq = p.tile_q;
    return Scratch::shmem_size(tq * dp) * 2 + Scratch::shmem_size(kKeyTile * dp) * 2 +
           Scratch::shmem_size(kKeyTile * tq) + Scratch::shmem_size(tq) * 3 +
           Scratch::shmem_size(kKeyTile);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, p.tile_q);
    if (rows.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = rows.offset, q0 = rows.begin, qn = rows.count;
    const std::int64_t d = p.head_dim, tq = p.tile_q, dp = round_up(d, kTileNR);
    const std::int64_t mq = round_up(qn, kTileMR);  // output rows the PV product covers
    const std::int64_t nq = round_up(qn, kTileNR);  // score columns (queries) computed
    constexpr std::int64_t tk = kKeyTile;

    // Scores are kept transposed, S^T = K Q^T ([key][query]): Q^T is built
    // once per query tile, key tiles are plain row copies, and the softmax
    // runs down columns, i.e. vectorised across queries.
    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch qt(scratch, dp * tq);  // [dim][query], pre-scaled by the softmax scale
    Scratch o(scratch, tq * dp);   // [query][dim] unnormalised output
    Scratch ks(scratch, tk * dp), vs(scratch, tk * dp);  // [key][dim]
    Scratch st(scratch, tk * tq);  // S^T, then P^T
    Scratch m(scratch, tq), l(scratch, tq), alpha(scratch, tq);
    Scratch vbad(scratch, tk);  // V rows taken out of the PV product (nonfinite_rows.hpp)

    const Acc scale = static_cast<Acc>(p.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nq), [&](const std::int64_t i) {
      if (i < qn) {
        const T* src = &q(c.b, p.q_row(p.pattern.position(br, c.s, off, q0 + i)), c.h, 0);
        for (std::int64_t x = 0; x < d; ++x)
          qt(x * tq + i) = static_cast<Acc>(src[x * q.stride[3]]) * scale;
      } else {  // padding queries: finite scores, never stored
        for (std::int64_t x = 0; x < d; ++x) qt(x * tq + i) = 0;
      }
      for (std::int64_t x = 0; x < dp; ++x) o(i * dp + x) = 0;
      m(i) = -INFINITY;
      l(i) = 0;
    });
    // The key ranges this tile visits (pattern.hpp): one for a dilated
    // branch, one per run of listed key blocks for a block-sparse pattern.
    const Spans spans = key_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, q0, qn);
    for (std::int64_t sp = 0; sp < spans.count; ++sp) {
    std::int64_t kbegin, kend;
    spans.get(sp, &kbegin, &kend);
    for (std::int64_t k0 = kbegin; k0 < kend; k0 += tk) {
      const std::int64_t kn = kend - k0 < tk ? kend - k0 : tk;
      const std::int64_t mk = round_up(kn, kTileMR);  // key rows computed
      team.team_barrier();  // the previous tile's readers are done with ks / vs
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mk), [&](const std::int64_t j) {
        Acc* krow = &ks(j * dp);
        Acc* vrow = &vs(j * dp);
        if (j < kn) {
          const std::int64_t row = p.k_row(p.pattern.position(br, c.s, off, k0 + j));
          const T* ksrc = &k(c.b, row, c.h, 0);
          const T* vsrc = &v(c.b, row, c.h, 0);
          for (std::int64_t x = 0; x < d; ++x) krow[x] = static_cast<Acc>(ksrc[x * k.stride[3]]);
          for (std::int64_t x = 0; x < d; ++x) vrow[x] = static_cast<Acc>(vsrc[x * v.stride[3]]);
          vbad(j) = take_out_if_nonfinite(vrow, d);
        } else {  // padding keys: finite, masked below
          for (std::int64_t x = 0; x < d; ++x) krow[x] = vrow[x] = 0;
          vbad(j) = 0;
        }
        for (std::int64_t x = d; x < dp; ++x) vrow[x] = 0;
      });
      team.team_barrier();
      team_tile_gemm(team, mk, nq, d, &ks(0), dp, &qt(0), tq, &st(0), tq, false);  // S^T = K Q^T
      team.team_barrier();
      // Online softmax down each column (query), kRowLanes columns at a time.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nq / kRowLanes), [&](const std::int64_t g) {
        const std::int64_t i0 = g * kRowLanes;
        Acc mx[kRowLanes], mref[kRowLanes], sum[kRowLanes];
        for (int u = 0; u < kRowLanes; ++u) mx[u] = m(i0 + u);
        for (std::int64_t j = 0; j < mk; ++j) {
          Acc* srow = &st(j * tq + i0);
          // Causal: key k0 + j is visible to query q0 + i iff k0 + j <= q0 + i.
          const std::int64_t first = p.causal ? k0 + j - q0 - i0 : -kRowLanes;
          for (int u = 0; u < kRowLanes; ++u) {
            const Acc sv = (j >= kn || u < first) ? Acc(-INFINITY) : srow[u];
            srow[u] = sv;
            mx[u] = sv > mx[u] ? sv : mx[u];
          }
        }
        // mx is -inf only if every score so far is -inf (inputs of -inf);
        // use 0 as the reference then, so exp() gives 0 instead of NaN.
        for (int u = 0; u < kRowLanes; ++u) {
          mref[u] = mx[u] == -INFINITY ? Acc(0) : mx[u];
          sum[u] = 0;
        }
        for (std::int64_t j = 0; j < mk; ++j) {
          Acc* srow = &st(j * tq + i0);
          for (int u = 0; u < kRowLanes; ++u) {
            srow[u] = fast_exp(srow[u] - mref[u]);
            sum[u] += srow[u];  // the denominator never sees dropout
          }
        }
        for (int u = 0; u < kRowLanes; ++u) {
          const std::int64_t i = i0 + u;
          alpha(i) = fast_exp(m(i) - mref[u]);
          l(i) = l(i) * alpha(i) + sum[u];
          m(i) = mx[u];
        }
        if (p.dropout.enabled()) {
          for (int u = 0; u < kRowLanes && i0 + u < qn; ++u) {
            const std::int64_t qpos = p.pattern.position(br, c.s, off, q0 + i0 + u);
            for (std::int64_t j = 0; j < kn; ++j) {
              Acc& pj = st(j * tq + i0 + u);
              if (pj != 0)
                pj *= static_cast<Acc>(p.dropout.factor(
                    c.b, c.h, qpos, p.pattern.position(br, c.s, off, k0 + j), br));
            }
          }
        }
      });
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
        Acc* orow = &o(i * dp);
        const Acc a = alpha(i);
        for (std::int64_t x = 0; x < dp; ++x) orow[x] *= a;
      });
      team.team_barrier();
      // O += P V with P read straight from P^T (row stride 1, key stride tq).
      team_tile_gemm_strided(team, mq, dp, kn, &st(0), std::int64_t(1), tq, &vs(0), dp, &o(0),
                             dp, true);
      if (any_flag(&vbad(0), kn)) {  // non-finite V rows: visible queries only
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
          const std::int64_t jend = p.causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
          for (std::int64_t j = 0; j < jend; ++j) {
            if (vbad(j) == Acc(0)) continue;
            const T* vsrc =
                &v(c.b, p.k_row(p.pattern.position(br, c.s, off, k0 + j)), c.h, 0);
            const Acc pij = st(j * tq + i);
            for (std::int64_t x = 0; x < d; ++x)
              o(i * dp + x) += pij * static_cast<Acc>(vsrc[x * v.stride[3]]);
          }
        });
      }
    }
    }  // spans
    team.team_barrier();
    // Merge this branch into the running (out, lse): Eq. 10 by log-sum-exp.
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      // l == 0 only when every score was -inf: the branch adds nothing.
      // (A NaN l falls through, so NaN inputs propagate to their row.)
      if (l(i) == 0) return;
      const std::int64_t pos = p.q_row(p.pattern.position(br, c.s, off, q0 + i));
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
      O* dst = &out(c.b, pos, c.h, 0);
      const std::int64_t os = out.stride[3];
      for (std::int64_t x = 0; x < d; ++x) {
        O& dv = dst[x * os];
        dv = static_cast<O>(w_old == 0 ? f * orow[x] : static_cast<Acc>(dv) * w_old + f * orow[x]);
      }
      lse(c.b, c.h, pos) = lse_new;
    });
  }
};

}  // namespace details
}  // namespace dilated
