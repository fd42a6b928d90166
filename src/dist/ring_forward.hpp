// dist/ring_forward.hpp - SeqParallelPlan::forward: local branches on the
// shard, cross-rank branches by a double-buffered ring of sparsified K/V.
// Included by seq_parallel_plan.hpp.
#pragma once

#include "dist/seq_parallel_plan.hpp"

namespace dilated {
namespace dist {

template <class ExecSpace>
template <class Q, class K, class V, class O, class L>
void SeqParallelPlan<ExecSpace>::forward(const ExecSpace& space, const Q& q, const K& k,
                                         const V& v, const O& out, const L& lse) const {
  using T = typename O::non_const_value_type;
  const auto qr = dilated::details::make_ref(q);
  const auto kr = dilated::details::make_ref(k);
  const auto vr = dilated::details::make_ref(v);
  const auto outr = dilated::details::make_ref(out);
  const auto lser = dilated::details::make_ref(lse);
  agree_on_call(1, sizeof(T), [&] {
    const ProblemShape s = local_shape();
    check_window_backend<T>(/*backward=*/false);
    using dilated::details::check_bshd;
    using dilated::details::check_no_alias;
    check_bshd("q", qr, s);
    check_bshd("k", kr, s);
    check_bshd("v", vr, s);
    check_bshd("out", outr, s);
    dilated::details::check_lse("lse", lser, s);
    dilated::details::check_no_self_overlap("out", outr);
    dilated::details::check_no_self_overlap("lse", lser);
    check_no_alias("out", outr, "q", qr);
    check_no_alias("out", outr, "k", kr);
    check_no_alias("out", outr, "v", vr);
    check_no_alias("out", outr, "lse", lser);
    check_no_alias("lse", lser, "q", qr);
    check_no_alias("lse", lser, "k", kr);
    check_no_alias("lse", lser, "v", vr);
  });
  // --- nothing above writes; everything below may ---
  dilated::details::init_forward_outputs<ExecSpace, T>(space, outr, lser);
  const auto mine = local_windows();
  for (int br = 0; br < layout_.num_branches(); ++br) {
    if (layout_.branch(br).cross_rank) {
      forward_cross_rank(space, br, q, k, v, out, lse);
      continue;
    }
    for (const ShardWindow& w : mine)  // whole segments inside each window
      plan_.forward_window(space, br, w.begin, details::shard_rows(q, w),
                           details::shard_rows(out, w), details::lse_rows(lse, w), w.begin,
                           details::shard_rows(k, w), details::shard_rows(v, w));
  }
  space.fence();
}

// Step 0 computes against the rank's own K/V while its packed rows travel to
// the next rank; step t (1 <= t < g) receives the block of rank
// source(t), forwards it (unless it is the last step) and computes against it
// while that transfer runs. g - 1 transfers of w/r rows per head per rank.
template <class ExecSpace>
template <class Q, class K, class V, class O, class L>
void SeqParallelPlan<ExecSpace>::forward_cross_rank(const ExecSpace& space, int br, const Q& q,
                                                    const K& k, const V& v, const O& out,
                                                    const L& lse) const {
  using T = typename O::non_const_value_type;
  const details::Ring ring = ring_of(br);
  const auto mine = local_windows();
  const SparseRows own = rows_of(br, comm_->rank());
  const std::int64_t e = own.elements();  // the same on every rank: equal shard windows
  const std::size_t bytes = static_cast<std::size_t>(2 * e) * sizeof(T);
  // Exchange buffers come from the plan's workspace pool (src/memory): repeated
  // calls allocate nothing from the system.
  memory::MemoryResource& pool = plan_.workspace_resource();
  const auto buf0 = memory::pooled_view<T*>(space, pool, 2 * e);
  const auto buf1 = memory::pooled_view<T*>(space, pool, 2 * e);
  const decltype(buf0.view) buf[2] = {buf0.view, buf1.view};
  const ProblemShape s = local_shape();
  const auto kblock = memory::pooled_view<T****>(space, pool, s.batch, s.seq_len, s.heads, s.head_dim);
  const auto vblock = memory::pooled_view<T****>(space, pool, s.batch, s.seq_len, s.heads, s.head_dim);
  const auto& kc = kblock.view;
  const auto& vc = vblock.view;

  pack_rows<ExecSpace, T>(space, own, dilated::details::make_ref(k), buf[0].data());
  pack_rows<ExecSpace, T>(space, own, dilated::details::make_ref(v), buf[0].data() + e);
  publish(space);
  // Causal, contiguous: a block is needed only by the ranks after its owner,
  // so nothing crosses from the group's last rank back to its first, and rank
  // i receives only at steps 1..i (its predecessors' blocks). Elsewhere every
  // block visits every rank.
  const bool forward_only = config_.causal && layout_.layout() == Layout::Contiguous;
  auto dest = [&](int step) {
    return !forward_only || (ring.index + 1 < ring.size && step <= ring.index) ? ring.next() : -1;
  };
  auto src = [&](int step) { return !forward_only || step + 1 <= ring.index ? ring.prev() : -1; };
  comm_->start_exchange(buf[0].data(), bytes, dest(0), buf[1].data(), bytes, src(0));
  auto compute = [&](const std::vector<ShardWindow>& keys, const auto& kv_k, const auto& kv_v) {
    for (const ShardWindow& qw : mine)
      for (const ShardWindow& kw : keys)
        if (!masked(qw, kw))
          plan_.forward_window(space, br, qw.begin, details::shard_rows(q, qw),
                               details::shard_rows(out, qw), details::lse_rows(lse, qw), kw.begin,
                               details::shard_rows(kv_k, kw), details::shard_rows(kv_v, kw));
  };
  compute(mine, k, v);
  int cur = 0;
  for (int t = 1; t < ring.size; ++t) {
    comm_->wait();
    cur ^= 1;  // buf[cur]: the block of rank source(t)
    const int from = ring.source(t);
    const SparseRows theirs = rows_of(br, from);
    const bool needed = any_unmasked(mine, layout_.windows(from));  // false if nothing came
    if (needed) {
      unpack_rows<ExecSpace, T>(space, theirs, buf[cur].data(), dilated::details::make_ref(kc),
                                false);
      unpack_rows<ExecSpace, T>(space, theirs, buf[cur].data() + e,
                                dilated::details::make_ref(vc), false);
    }
    if (t + 1 < ring.size) {
      // buf[cur ^ 1] was last read by the previous step's kernels.
      publish(space);
      comm_->start_exchange(buf[cur].data(), bytes, dest(t), buf[cur ^ 1].data(), bytes, src(t));
    }
    if (needed) compute(layout_.windows(from), kc, vc);
  }
  space.fence();  // the pool is not stream-ordered: kernels finish before blocks return
}

}  // namespace dist
}  // namespace dilated
