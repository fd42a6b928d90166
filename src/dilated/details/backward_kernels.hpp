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
#include "dilated/details/nonfinite_rows.hpp"
#include "dilated/details/row_ops.hpp"
#include "dilated/details/tile_gemm.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

// Shared inputs of both backward kernels. G: the type the gradients are
// accumulated in - T, or for 16-bit T the accumulation type (the plan's float
// workspace, rounded to T once after the last branch).
template <class T, class G = T>
struct BackwardTensors {
  using Acc = accum_t<T>;
  TensorRef<const T, 4> q, k, v, dout;
  TensorRef<const Acc, 3> lse, delta;  // [batch, heads, seq]
  TensorRef<G, 4> dq, dk, dv;
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

template <class ExecSpace, class T, class G = T>
struct BackwardDQKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T, G> t;
  KernelParams p;
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR), tq = p.tile_q, tk = kKeyTile;
    return Scratch::shmem_size(tq * dp) * 3 + Scratch::shmem_size(tk * dp) * 2 +
           Scratch::shmem_size(tq * tk) * 2 + Scratch::shmem_size(tq) * 2 +
           Scratch::shmem_size(tk);
  }

  // Like the forward kernel, products are oriented so that the streamed key
  // tiles are plain row copies: S^T = K Q^T, dP^T = V dO^T ([key][query]),
  // and dQ += dS K reads dS straight from dS^T.
  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, p.tile_q);
    if (rows.count == 0) return;
    const int br = p.branch;
    const std::int64_t off = rows.offset, q0 = rows.begin, qn = rows.count;
    const std::int64_t d = p.head_dim, tq = p.tile_q, dp = round_up(d, kTileNR);
    const std::int64_t mq = round_up(qn, kTileMR), nq = round_up(qn, kTileNR);
    constexpr std::int64_t tk = kKeyTile;

    const auto& scratch = team.team_scratch(p.scratch_level);
    Scratch qt(scratch, dp * tq), dot(scratch, dp * tq);  // [dim][query]
    Scratch dqs(scratch, tq * dp);                          // [query][dim]
    Scratch ks(scratch, tk * dp), vs(scratch, tk * dp);    // [key][dim]
    Scratch st(scratch, tk * tq), dpt(scratch, tk * tq);   // S^T -> dS^T, dP^T
    Scratch lrow(scratch, tq), drow(scratch, tq);
    Scratch kbad(scratch, tk);  // K rows taken out of the dQ product (nonfinite_rows.hpp)
    const Acc scale = static_cast<Acc>(p.scale);
    const Acc oscale = static_cast<Acc>(p.output_scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nq), [&](const std::int64_t i) {
      if (i < qn) {
        const std::int64_t pos = p.q_row(p.pattern.position(br, c.s, off, q0 + i));
        load_col(&qt(0), tq, i, &t.q(c.b, pos, c.h, 0), t.q.stride[3], d, scale);
        // dO_true = output_scale * dout (see the head-group mode)
        load_col(&dot(0), tq, i, &t.dout(c.b, pos, c.h, 0), t.dout.stride[3], d, oscale);
        lrow(i) = t.lse(c.b, c.h, pos);
        drow(i) = t.delta(c.b, c.h, pos);
      } else {
        for (std::int64_t x = 0; x < d; ++x) qt(x * tq + i) = dot(x * tq + i) = 0;
        lrow(i) = drow(i) = 0;
      }
      for (std::int64_t x = 0; x < dp; ++x) dqs(i * dp + x) = 0;
    });
    const Spans spans = key_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, q0, qn);
    for (std::int64_t sp = 0; sp < spans.count; ++sp) {
    std::int64_t kbegin, kend;
    spans.get(sp, &kbegin, &kend);
    for (std::int64_t k0 = kbegin; k0 < kend; k0 += tk) {
      const std::int64_t kn = kend - k0 < tk ? kend - k0 : tk;
      const std::int64_t mk = round_up(kn, kTileMR);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mk), [&](const std::int64_t j) {
        if (j < kn) {
          const std::int64_t pos = p.k_row(p.pattern.position(br, c.s, off, k0 + j));
          load_row(&ks(j * dp), &t.k(c.b, pos, c.h, 0), t.k.stride[3], d, dp, Acc(1));
          load_row(&vs(j * dp), &t.v(c.b, pos, c.h, 0), t.v.stride[3], d, dp, Acc(1));
          kbad(j) = nonfinite_flag(&ks(j * dp), d);
        } else {
          for (std::int64_t x = 0; x < dp; ++x) ks(j * dp + x) = vs(j * dp + x) = 0;
          kbad(j) = 0;
        }
      });
      team.team_barrier();
      team_tile_gemm(team, mk, nq, d, &ks(0), dp, &qt(0), tq, &st(0), tq, false);    // S^T
      team_tile_gemm(team, mk, nq, d, &vs(0), dp, &dot(0), tq, &dpt(0), tq, false);  // dP^T
      team.team_barrier();
      // dS = P (z dP - D) scale, down each column (query), kRowLanes at a time.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nq / kRowLanes), [&](const std::int64_t g) {
        const std::int64_t i0 = g * kRowLanes;
        for (std::int64_t j = 0; j < mk; ++j) {
          Acc* srow = &st(j * tq + i0);
          const Acc* dprow = &dpt(j * tq + i0);
          const std::int64_t first = p.causal ? k0 + j - q0 - i0 : -kRowLanes;
          const std::int64_t lanes = qn - i0;  // valid queries in this group
          if (!p.dropout.enabled()) {
            for (int u = 0; u < kRowLanes; ++u) {
              const bool visible = j < kn && u >= first && u < lanes;
              const Acc prob = fast_exp(srow[u] - lrow(i0 + u));
              srow[u] = visible ? prob * (dprow[u] - drow(i0 + u)) * scale : Acc(0);
            }
          } else {
            const std::int64_t kpos = p.pattern.position(br, c.s, off, k0 + (j < kn ? j : 0));
            for (int u = 0; u < kRowLanes; ++u) {
              const bool visible = j < kn && u >= first && u < lanes;
              if (!visible) {
                srow[u] = 0;
                continue;
              }
              const Acc z = static_cast<Acc>(p.dropout.factor(
                  c.b, c.h, p.pattern.position(br, c.s, off, q0 + i0 + u), kpos, br));
              srow[u] = fast_exp(srow[u] - lrow(i0 + u)) * (z * dprow[u] - drow(i0 + u)) * scale;
            }
          }
        }
      });
      const bool bad_keys = any_flag(&kbad(0), kn);
      if (bad_keys)  // S^T is done with K: take non-finite rows out of dQ += dS K
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn), [&](const std::int64_t j) {
          if (kbad(j) != Acc(0))
            for (std::int64_t x = 0; x < dp; ++x) ks(j * dp + x) = 0;
        });
      team.team_barrier();
      // dQ += dS K, with dS read from dS^T (row stride 1, key stride tq).
      team_tile_gemm_strided(team, mq, dp, kn, &st(0), std::int64_t(1), tq, &ks(0), dp, &dqs(0),
                             dp, true);
      if (bad_keys) {  // ... and add them back for the visible queries
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
          const std::int64_t jend = p.causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
          for (std::int64_t j = 0; j < jend; ++j) {
            if (kbad(j) == Acc(0)) continue;
            const T* ksrc = &t.k(c.b, p.k_row(p.pattern.position(br, c.s, off, k0 + j)), c.h, 0);
            for (std::int64_t x = 0; x < d; ++x)
              dqs(i * dp + x) += st(j * tq + i) * static_cast<Acc>(ksrc[x * t.k.stride[3]]);
          }
        });
      }
    }
    }  // spans
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      G* g = &t.dq(c.b, p.q_row(p.pattern.position(br, c.s, off, q0 + i)), c.h, 0);
      const std::int64_t sd = t.dq.stride[3];
      for (std::int64_t x = 0; x < d; ++x)
        g[x * sd] = static_cast<G>(static_cast<Acc>(g[x * sd]) + dqs(i * dp + x));
    });
  }
};

// One key tile of the key-major backward (shared by BackwardDKVKernel and
// BackwardFusedKernel): the tile's K^T and V^T stay in scratch while query
// tiles stream past as plain rows; each step computes S = Q K^T and
// dP = dO V^T ([query][key]), turns them into P z and dS' = P (z dP - D)
// (dS = scale dS'), and accumulates dV += P^T dO, dK += dS'^T (scale Q),
// reading P and dS' transposed in place. All pointers are team scratch.
template <class T, class G = T>
struct KeyMajorTile {
  using Acc = accum_t<T>;
  const BackwardTensors<T, G>* t;
  const KernelParams* p;
  TileCoord c;
  std::int64_t off, k0, kn, mk, nk, d, dp, tk;
  Acc *kt, *vt, *ks;          // [dim][key] x2; optional [key][dim] K rows (nullptr: not needed)
  Acc *dks, *dvs;             // [key][dim] accumulators
  Acc *qs, *dos;              // [query][dim], query rows of the current step
  Acc *sc, *dpm;              // [query][key]: P z and dS' after a step
  Acc *lrow, *drow;           // per query: final LSE and D
  // Non-finite rows taken out of the accumulating products (nonfinite_rows.hpp):
  Acc *kbad;                  // per key of ks (when ks is used)
  Acc *qbad, *dobad;          // per query row of qs / dos
  static constexpr std::int64_t tq = kKeyTile;  // query rows per step

  // The same scratch, moved to key tile [k0, k0 + kn).
  KOKKOS_INLINE_FUNCTION KeyMajorTile at(std::int64_t new_k0, std::int64_t new_kn) const {
    KeyMajorTile m = *this;
    m.k0 = new_k0;
    m.kn = new_kn;
    m.mk = round_up(new_kn, kTileMR);
    m.nk = round_up(new_kn, kTileNR);
    return m;
  }

  KOKKOS_INLINE_FUNCTION std::int64_t pos(std::int64_t sparse) const {
    return p->pattern.position(p->branch, c.s, off, sparse);
  }

  template <class Member>
  KOKKOS_INLINE_FUNCTION void load_keys(const Member& team) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nk), [&](const std::int64_t j) {
      if (j < kn) {
        const std::int64_t kp = p->k_row(pos(k0 + j));
        const T* ksrc = &t->k(c.b, kp, c.h, 0);
        load_col(kt, tk, j, ksrc, t->k.stride[3], d, Acc(1));
        load_col(vt, tk, j, &t->v(c.b, kp, c.h, 0), t->v.stride[3], d, Acc(1));
        if (ks) {
          load_row(ks + j * dp, ksrc, t->k.stride[3], d, dp, Acc(1));
          kbad[j] = take_out_if_nonfinite(ks + j * dp, d);  // added back by add_bad_keys_to_dq
        }
      } else {
        for (std::int64_t x = 0; x < d; ++x) kt[x * tk + j] = vt[x * tk + j] = 0;
        if (ks) {
          for (std::int64_t x = 0; x < dp; ++x) ks[j * dp + x] = 0;
          kbad[j] = 0;
        }
      }
      if (j < mk)
        for (std::int64_t x = 0; x < dp; ++x) dks[j * dp + x] = dvs[j * dp + x] = 0;
    });
  }

  // Query rows [q0, q0 + qn) against this key tile. Returns with sc = P z and
  // dpm = dS' for the step (rows padded to kTileMR are zero).
  template <class Member>
  KOKKOS_INLINE_FUNCTION void query_step(const Member& team, std::int64_t q0,
                                         std::int64_t qn) const {
    const std::int64_t mq = round_up(qn, kTileMR);
    const Acc scale = static_cast<Acc>(p->scale), oscale = static_cast<Acc>(p->output_scale);
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
      if (i < qn) {
        const std::int64_t qp = p->q_row(pos(q0 + i));
        // Q pre-scaled: S = (scale Q) K^T, and dK = dS'^T (scale Q) below.
        load_row(qs + i * dp, &t->q(c.b, qp, c.h, 0), t->q.stride[3], d, dp, scale);
        load_row(dos + i * dp, &t->dout(c.b, qp, c.h, 0), t->dout.stride[3], d, dp, oscale);
        lrow[i] = t->lse(c.b, c.h, qp);
        drow[i] = t->delta(c.b, c.h, qp);
        qbad[i] = nonfinite_flag(qs + i * dp, d);
        dobad[i] = nonfinite_flag(dos + i * dp, d);
      } else {
        for (std::int64_t x = 0; x < dp; ++x) qs[i * dp + x] = dos[i * dp + x] = 0;
        lrow[i] = drow[i] = 0;
        qbad[i] = dobad[i] = 0;
      }
    });
    team.team_barrier();
    team_tile_gemm(team, mq, nk, d, qs, dp, kt, tk, sc, tk, false);    // S
    team_tile_gemm(team, mq, nk, d, dos, dp, vt, tk, dpm, tk, false);  // dP
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mq), [&](const std::int64_t i) {
      Acc* srow = sc + i * tk;    // becomes P z
      Acc* dsrow = dpm + i * tk;  // becomes dS' = P (z dP - D)
      // Causal: query q0 + i sees key k0 + j iff k0 + j <= q0 + i.
      const std::int64_t last = i >= qn ? -1 : (p->causal ? q0 + i - k0 : kn - 1);
      const Acc li = lrow[i], di = drow[i];
      // S and dP are done with this row of Q and dO: take non-finite rows out
      // of dK += dS'^T Q and dV += P^T dO (add_bad_queries puts them back).
      if (qbad[i] != Acc(0))
        for (std::int64_t x = 0; x < dp; ++x) qs[i * dp + x] = 0;
      if (dobad[i] != Acc(0))
        for (std::int64_t x = 0; x < dp; ++x) dos[i * dp + x] = 0;
      if (!p->dropout.enabled()) {
        for (std::int64_t j = 0; j < nk; ++j) {
          const bool visible = j <= last && j < kn;
          const Acc prob = visible ? fast_exp(srow[j] - li) : Acc(0);
          srow[j] = prob;
          dsrow[j] = visible ? prob * (dsrow[j] - di) : Acc(0);  // a NaN D stays in its row
        }
      } else {
        const std::int64_t qp = pos(q0 + (i < qn ? i : 0));
        for (std::int64_t j = 0; j < nk; ++j) {
          if (!(j <= last && j < kn)) {
            srow[j] = dsrow[j] = 0;
            continue;
          }
          const Acc prob = fast_exp(srow[j] - li);
          const Acc z =
              static_cast<Acc>(p->dropout.factor(c.b, c.h, qp, pos(k0 + j), p->branch));
          srow[j] = prob * z;
          dsrow[j] = prob * (z * dsrow[j] - di);
        }
      }
    });
    team.team_barrier();
    team_tile_gemm_strided(team, mk, dp, qn, sc, std::int64_t(1), tk, dos, dp, dvs, dp,
                           true);  // dV += P^T dO
    team_tile_gemm_strided(team, mk, dp, qn, dpm, std::int64_t(1), tk, qs, dp, dks, dp,
                           true);  // dK += dS'^T (scale Q)
    if (any_flag(qbad, qn) || any_flag(dobad, qn)) add_bad_queries(team, q0, qn);
  }

  // The visible pairs of the query rows that query_step took out of the dV
  // and dK products, added back from global memory.
  template <class Member>
  KOKKOS_INLINE_FUNCTION void add_bad_queries(const Member& team, std::int64_t q0,
                                              std::int64_t qn) const {
    const Acc scale = static_cast<Acc>(p->scale), oscale = static_cast<Acc>(p->output_scale);
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn), [&](const std::int64_t j) {
      const std::int64_t ibegin = p->causal && k0 + j - q0 > 0 ? k0 + j - q0 : 0;
      for (std::int64_t i = ibegin; i < qn; ++i) {
        if (qbad[i] == Acc(0) && dobad[i] == Acc(0)) continue;
        const std::int64_t qp = p->q_row(pos(q0 + i));
        const T* qsrc = &t->q(c.b, qp, c.h, 0);
        const T* dsrc = &t->dout(c.b, qp, c.h, 0);
        for (std::int64_t x = 0; x < d; ++x) {
          if (qbad[i] != Acc(0))
            dks[j * dp + x] += dpm[i * tk + j] * scale * static_cast<Acc>(qsrc[x * t->q.stride[3]]);
          if (dobad[i] != Acc(0))
            dvs[j * dp + x] +=
                sc[i * tk + j] * oscale * static_cast<Acc>(dsrc[x * t->dout.stride[3]]);
        }
      }
    });
  }

  // After dQ += dS' K (fused kernel): the visible pairs of the key rows that
  // load_keys took out of ks, added to the query rows' dQ tile dq[query][dim].
  template <class Member>
  KOKKOS_INLINE_FUNCTION void add_bad_keys_to_dq(const Member& team, std::int64_t q0,
                                                 std::int64_t qn, Acc* dq) const {
    if (!any_flag(kbad, kn)) return;
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
      const std::int64_t jend = p->causal && q0 + i - k0 + 1 < kn ? q0 + i - k0 + 1 : kn;
      for (std::int64_t j = 0; j < jend; ++j) {
        if (kbad[j] == Acc(0)) continue;
        const T* ksrc = &t->k(c.b, p->k_row(pos(k0 + j)), c.h, 0);
        for (std::int64_t x = 0; x < d; ++x)
          dq[i * dp + x] += dpm[i * tk + j] * static_cast<Acc>(ksrc[x * t->k.stride[3]]);
      }
    });
  }

  template <class Member>
  KOKKOS_INLINE_FUNCTION void store_keys(const Member& team) const {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kn), [&](const std::int64_t j) {
      const std::int64_t kp = p->k_row(pos(k0 + j));
      G* gk = &t->dk(c.b, kp, c.h, 0);
      G* gv = &t->dv(c.b, kp, c.h, 0);
      const std::int64_t sk = t->dk.stride[3], sv = t->dv.stride[3];
      for (std::int64_t x = 0; x < d; ++x) {
        gk[x * sk] = static_cast<G>(static_cast<Acc>(gk[x * sk]) + dks[j * dp + x]);
        gv[x * sv] = static_cast<G>(static_cast<Acc>(gv[x * sv]) + dvs[j * dp + x]);
      }
    });
  }
};

// Scratch of a KeyMajorTile: kt, vt, dks, dvs (+ ks) key-sized, qs, dos
// query-sized, two score tiles and two per-query vectors.
template <class Scratch>
std::size_t key_major_scratch_bytes(std::int64_t head_dim, std::int64_t tk, bool with_key_rows) {
  const std::int64_t dp = round_up(head_dim, kTileNR), tq = kKeyTile;
  return Scratch::shmem_size(tk * dp) * (with_key_rows ? 5 : 4) +
         Scratch::shmem_size(tq * dp) * 2 + Scratch::shmem_size(tq * tk) * 2 +
         Scratch::shmem_size(tq) * 4 + Scratch::shmem_size(tk);
}

// Allocates a KeyMajorTile's scratch for the team's key tile [k0, k0 + kn).
template <class T, class G, class ScratchSpace, class Scratch>
KOKKOS_INLINE_FUNCTION KeyMajorTile<T, G> make_key_major_tile(
    const ScratchSpace& scratch, const BackwardTensors<T, G>& t, const KernelParams& p,
    const TileCoord& c, std::int64_t off, std::int64_t k0, std::int64_t kn, bool with_key_rows,
    Scratch* /*type tag*/) {
  using Acc = accum_t<T>;
  const std::int64_t d = p.head_dim, tk = p.tile_k, dp = round_up(d, kTileNR),
                     tq = KeyMajorTile<T, G>::tq;
  KeyMajorTile<T, G> m{&t, &p, c, off, k0, kn, round_up(kn, kTileMR), round_up(kn, kTileNR), d, dp, tk,
                    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  auto take = [&](std::int64_t n) -> Acc* { return Scratch(scratch, n).data(); };
  m.kt = take(dp * tk);
  m.vt = take(dp * tk);
  m.ks = with_key_rows ? take(tk * dp) : nullptr;
  m.dks = take(tk * dp);
  m.dvs = take(tk * dp);
  m.qs = take(tq * dp);
  m.dos = take(tq * dp);
  m.sc = take(tq * tk);
  m.dpm = take(tq * tk);
  m.lrow = take(tq);
  m.drow = take(tq);
  m.kbad = take(tk);
  m.qbad = take(tq);
  m.dobad = take(tq);
  return m;
}

template <class ExecSpace, class T, class G = T>
struct BackwardDKVKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T, G> t;
  KernelParams p;  // tile_k rows of keys per team; kKeyTile query rows per step
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    return key_major_scratch_bytes<Scratch>(p.head_dim, p.tile_k, false);
  }

  // The team's key tile is transposed once (K^T, V^T); query tiles stream.
  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    const TileRows rows = tile_rows(p, c, p.tile_k, /*own_keys=*/true);
    if (rows.count == 0) return;
    const KeyMajorTile<T, G> tile = make_key_major_tile(
        team.team_scratch(p.scratch_level), t, p, c, rows.offset, rows.begin, rows.count, false,
        static_cast<Scratch*>(nullptr));
    // The query ranges that visit this key tile (pattern.hpp).
    const Spans spans =
        query_spans(p.pattern, p.causal, c.h, rows.other_begin, rows.other_end, rows.begin);
    if (spans.count == 0) return;  // no query visits these keys: dk, dv stay 0
    tile.load_keys(team);
    for (std::int64_t sp = 0; sp < spans.count; ++sp) {
      std::int64_t qbegin, n;
      spans.get(sp, &qbegin, &n);
      for (std::int64_t q0 = qbegin; q0 < n; q0 += tile.tq)
        tile.query_step(team, q0, n - q0 < tile.tq ? n - q0 : tile.tq);
    }
    tile.store_keys(team);
  }
};

}  // namespace details
}  // namespace dilated
