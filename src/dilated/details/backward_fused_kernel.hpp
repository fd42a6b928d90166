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

template <class ExecSpace, class T, class G = T>  // G: see BackwardTensors
struct BackwardFusedKernel {
  using Acc = accum_t<T>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Scratch = ScratchArray<ExecSpace, Acc>;
  BackwardTensors<T, G> t;
  KernelParams p;  // tiles_per_segment == 1: the team owns the whole segment
  std::int64_t league_offset = 0;

  static std::size_t scratch_bytes(const KernelParams& p) {
    const std::int64_t dp = round_up(p.head_dim, kTileNR);
    return key_major_scratch_bytes<Scratch>(p.head_dim, p.tile_k, true) +
           Scratch::shmem_size(kKeyTile * dp);  // the step's dQ
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team) const {
    const TileCoord c = decode_tile(p, team.league_rank() + league_offset);
    // The team's keys: the segment's whole key window (tiles_per_segment == 1).
    const TileRows seg =
        tile_rows(p, c, p.pattern.max_kept_in_window(p.branch, p.k_end - p.k_begin), true);
    if (seg.count == 0) return;
    const std::int64_t kend = seg.begin + seg.count, n = seg.other_end;  // n: queries' end
    const std::int64_t d = p.head_dim, dp = round_up(d, kTileNR);
    const Acc scale = static_cast<Acc>(p.scale);
    // Team scratch is a bump allocator: take it once, reuse it for every key tile.
    const auto& scratch = team.team_scratch(p.scratch_level);
    const KeyMajorTile<T, G> first = make_key_major_tile(scratch, t, p, c, seg.offset, 0, 0, true,
                                                      static_cast<Scratch*>(nullptr));
    Scratch dqt(scratch, first.tq * dp);
    // Key tiles: consecutive over the segment, or (block-sparse) never
    // across a key block, so each has one list of visiting query runs.
    const BlockSparseRule& bs = p.pattern.block_sparse;
    const std::int64_t ntiles =
        bs.enabled() ? bs.num_tiles(true, p.tile_k) : (seg.count + p.tile_k - 1) / p.tile_k;
    for (std::int64_t kt = 0; kt < ntiles; ++kt) {
      std::int64_t k0 = seg.begin + kt * p.tile_k, kcount = kend - k0 < p.tile_k ? kend - k0 : p.tile_k;
      if (bs.enabled()) bs.tile_range(true, p.tile_k, kt, &k0, &kcount);
      const Spans spans = query_spans(p.pattern, p.causal, c.h, seg.other_begin, n, k0);
      if (kcount == 0 || spans.count == 0) continue;  // no query visits these keys
      const KeyMajorTile<T, G> tile = first.at(k0, kcount);
      const std::int64_t kn = tile.kn;
      team.team_barrier();  // the previous key tile's readers are done
      tile.load_keys(team);
      for (std::int64_t sp = 0; sp < spans.count; ++sp) {
      std::int64_t qbegin, qend;
      spans.get(sp, &qbegin, &qend);
      for (std::int64_t q0 = qbegin; q0 < qend; q0 += tile.tq) {
        const std::int64_t qn = qend - q0 < tile.tq ? qend - q0 : tile.tq;
        tile.query_step(team, q0, qn);
        // dQ += scale dS' K, straight into dq: these rows belong to this team.
        team_tile_gemm(team, round_up(qn, kTileMR), dp, kn, tile.dpm, tile.tk, tile.ks, dp,
                       &dqt(0), dp, false);
        tile.add_bad_keys_to_dq(team, q0, qn, &dqt(0));  // non-finite K rows (rare)
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, qn), [&](const std::int64_t i) {
          G* g = &t.dq(c.b, p.q_row(tile.pos(q0 + i)), c.h, 0);
          const std::int64_t sd = t.dq.stride[3];
          for (std::int64_t x = 0; x < d; ++x)
            g[x * sd] = static_cast<G>(static_cast<Acc>(g[x * sd]) + scale * dqt(i * dp + x));
        });
      }
      }  // spans
      tile.store_keys(team);
    }
  }
};

}  // namespace details
}  // namespace dilated
