// dist/ring_backward.hpp - SeqParallelPlan::backward: local branches on the
// shard; cross-rank branches by the same ring as forward, with each K/V
// block's gradient accumulator travelling one step behind it and arriving
// back at its owner after a full turn (the reverse of the forward exchange).
// Included by seq_parallel_plan.hpp.
#pragma once

#include <algorithm>
#include <vector>

#include "dist/seq_parallel_plan.hpp"

namespace dilated {
namespace dist {
namespace details {

// A shard's query windows cut at half their rows: the last cross-rank
// branch computes the `early` part of its own block at step 0 (while its K/V
// make their first hop) and the `late` part after its final accumulator
// return has started, which that compute then hides (see backward()).
// Queries split freely: dq rows are independent, and dk, dv add up over them.
inline void split_query_windows(const std::vector<ShardWindow>& ws,
                                std::vector<ShardWindow>* early,
                                std::vector<ShardWindow>* late) {
  for (const ShardWindow& w : ws) {
    const std::int64_t h = w.len / 2;
    if (h > 0) early->push_back({w.begin, h, w.row});
    late->push_back({w.begin + h, w.len - h, w.row + h});
  }
}

// Rough count of the (query, key) pairs branch `br` computes per batch on a
// rank (causal halves every term alike, so it is left out): a local branch
// (l / w) (w / r)^2 per head running it, a cross-rank branch's own block
// (l / r)^2. Only ratios of these are used.
inline double own_pairs(const AttentionConfig& config, const ProblemShape& global,
                        std::int64_t local_len, int br) {
  const PatternParams p = make_pattern(config, global);
  std::int64_t heads = 0;
  for (std::int64_t h = 0; h < global.heads; ++h) heads += p.active(h, br) ? 1 : 0;
  const double l = static_cast<double>(local_len);
  const double w = std::min(static_cast<double>(p.segment_length[br]), l);
  const double r = static_cast<double>(p.dilation[br]);
  return static_cast<double>(heads) * (l / w) * (w / r) * (w / r);
}

}  // namespace details

template <class ExecSpace>
template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
void SeqParallelPlan<ExecSpace>::backward(const ExecSpace& space, const Q& q, const K& k,
                                          const V& v, const O& out, const L& lse,
                                          const DO& dout, const DQ& dq, const DK& dk,
                                          const DV& dv) const {
  using T = typename DQ::non_const_value_type;
  using Acc = dilated::details::accum_t<T>;
  const TensorRef<const T, 4> ins[] = {dilated::details::make_ref(q), dilated::details::make_ref(k),
                                       dilated::details::make_ref(v), dilated::details::make_ref(out),
                                       dilated::details::make_ref(dout)};
  const char* in_names[] = {"q", "k", "v", "out", "dout"};
  const auto dqr = dilated::details::make_ref(dq);
  const auto dkr = dilated::details::make_ref(dk);
  const auto dvr = dilated::details::make_ref(dv);
  const TensorRef<T, 4> grads[] = {dqr, dkr, dvr};
  const char* grad_names[] = {"dq", "dk", "dv"};
  const auto lser = dilated::details::make_ref(lse);
  agree_on_call(2, sizeof(T), [&] {
    const ProblemShape s = local_shape();
    check_window_backend<T>(/*backward=*/true);
    for (int i = 0; i < 5; ++i) dilated::details::check_bshd(in_names[i], ins[i], s);
    for (int g = 0; g < 3; ++g) dilated::details::check_bshd(grad_names[g], grads[g], s);
    dilated::details::check_lse("lse", lser, s);
    for (int g = 0; g < 3; ++g) {
      dilated::details::check_no_self_overlap(grad_names[g], grads[g]);
      for (int i = 0; i < 5; ++i)
        dilated::details::check_no_alias(grad_names[g], grads[g], in_names[i], ins[i]);
      for (int o = 0; o < 3; ++o)
        if (o != g)
          dilated::details::check_no_alias(grad_names[g], grads[g], grad_names[o], grads[o]);
      dilated::details::check_no_alias(grad_names[g], grads[g], "lse", lser);
    }
  });
  // --- nothing above writes; everything below may ---
  const ProblemShape s = local_shape();
  if (timer_) {
    space.fence();
    timer_->start();
  }
  const auto delta_block =
      memory::pooled_view<Acc***>(space, plan_.workspace_resource(), s.batch, s.heads, s.seq_len);
  const auto& delta = delta_block.view;
  plan_.backward_delta(space, out, dout, delta);
  mark(space, "delta");
  for (const auto& g : grads) dilated::details::zero_tensor<ExecSpace, T>(space, g);
  mark(space, "zero_grads");
  const auto mine = local_windows();
  // Each cross-rank branch ends by starting its final accumulator return
  // (`pending`), which the compute after it hides: the next cross-rank
  // branch completes it after its first step, the local branches run while
  // the last one travels. Hence the order: cross-rank branches first. Every
  // rank goes through the same order, so the transfers match up.
  //
  // The last cross-rank branch's return has only the local branches after
  // it. When they are lighter than half of that branch's own block (none at
  // all: causal dense, one long LongNet branch), it computes the own block in
  // two halves of query rows instead: the first at step 0, the second while
  // the return travels (it then hides the return, and the first half the K/V's
  // first hop, at the price of hiding less of that hop than the whole block).
  details::PendingReturn<T, typename ExecSpace::memory_space> pending;
  int last_cross = -1;
  double local_pairs = 0;
  for (int br = 0; br < layout_.num_branches(); ++br) {
    if (layout_.branch(br).cross_rank)
      last_cross = br;
    else
      local_pairs += details::own_pairs(config_, global_, s.seq_len, br);
  }
  const bool split_last =
      overlap_return_ && last_cross >= 0 &&
      local_pairs < 0.5 * details::own_pairs(config_, global_, s.seq_len, last_cross);
  auto run_branch = [&](int br) {
    if (layout_.branch(br).cross_rank) {
      backward_cross_rank(space, br, q, k, v, dout, lse, delta, dq, dk, dv, pending,
                          split_last && br == last_cross);
      if (!overlap_return_) finish_return(space, dk, dv, pending);  // the earlier schedule
      return;
    }
    for (const ShardWindow& w : mine)
      plan_.backward_window(space, br, w.begin, details::shard_rows(q, w),
                            details::shard_rows(dout, w), details::lse_rows(lse, w),
                            details::lse_rows(delta, w), details::shard_rows(dq, w), w.begin,
                            details::shard_rows(k, w), details::shard_rows(v, w),
                            details::shard_rows(dk, w), details::shard_rows(dv, w));
    mark(space, "compute_local");
  };
  if (overlap_return_) {
    for (int br = 0; br < layout_.num_branches(); ++br)
      if (layout_.branch(br).cross_rank) run_branch(br);
    for (int br = 0; br < layout_.num_branches(); ++br)
      if (!layout_.branch(br).cross_rank) run_branch(br);
  } else {
    for (int br = 0; br < layout_.num_branches(); ++br) run_branch(br);
  }
  finish_return(space, dk, dv, pending);
  mark(space, "return_wait_add");
  space.fence();
}

template <class ExecSpace>
template <class DK, class DV, class Pending>
void SeqParallelPlan<ExecSpace>::finish_return(const ExecSpace& space, const DK& dk,
                                               const DV& dv, Pending& pending) const {
  using T = typename DK::non_const_value_type;
  if (!pending.open) return;
  comm_->wait();
  const std::int64_t e = pending.rows.elements();
  unpack_rows<ExecSpace, T>(space, pending.rows, pending.in.view.data(),
                            dilated::details::make_ref(dk), true);
  unpack_rows<ExecSpace, T>(space, pending.rows, pending.in.view.data() + e,
                            dilated::details::make_ref(dv), true);
  space.fence();  // the pool is not stream-ordered: kernels finish before blocks return
  pending = Pending();
}

// Step 0: the own block, gradients straight into dk, dv, while the packed K/V
// go to the next rank. Step t: the K/V of rank source(t) (prefetched during
// step t-1) are computed into a fresh dK/dV block while the accumulator of
// that block - the sum of the ranks that had it before - travels from the
// previous rank; after the compute it is added and the sum is passed on at
// the start of the next step. Both transfers thus overlap a compute step.
// After step g-1 the accumulator that arrives is the own block's, summed over
// the other g-1 ranks, and is added into dk, dv (the reverse ring). That last
// transfer is only started here (`pending`): backward() lets the next
// compute hide it. A return still pending from the previous cross-rank
// branch travels during this branch's step 0 and is completed after it.
// `split_own` (the last cross-rank branch, with little or nothing after it):
// step 0 computes the first half of the own query rows against the own keys,
// and the second half runs here, after the return has started, hiding it.
template <class ExecSpace>
template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV,
          class Pending>
void SeqParallelPlan<ExecSpace>::backward_cross_rank(const ExecSpace& space, int br, const Q& q,
                                                     const K& k, const V& v, const DO& dout,
                                                     const L& lse, const DL& delta,
                                                     const DQ& dq, const DK& dk, const DV& dv,
                                                     Pending& pending, bool split_own) const {
  using T = typename DQ::non_const_value_type;
  const details::Ring ring = ring_of(br);
  const auto mine = local_windows();
  // A ring of one has no return to hide: its own block is all of it.
  std::vector<ShardWindow> early, late;
  if (split_own && ring.size > 1)
    details::split_query_windows(mine, &early, &late);
  else
    early = mine;
  const SparseRows own = rows_of(br, comm_->rank());
  const std::int64_t e = own.elements();
  const std::size_t bytes = static_cast<std::size_t>(2 * e) * sizeof(T);
  // Exchange buffers from the plan's workspace pool (src/memory).
  memory::MemoryResource& pool = plan_.workspace_resource();
  const ProblemShape s = local_shape();
  const auto kv0 = memory::pooled_view<T*>(space, pool, 2 * e);
  const auto kv1 = memory::pooled_view<T*>(space, pool, 2 * e);
  auto in_block = memory::pooled_view<T*>(space, pool, 2 * e);
  auto out_block = memory::pooled_view<T*>(space, pool, 2 * e);
  const decltype(kv0.view) kv[2] = {kv0.view, kv1.view};
  const auto& acc_in = in_block.view;
  const auto& acc_out = out_block.view;
  auto block = [&] {
    return memory::pooled_view<T****>(space, pool, s.batch, s.seq_len, s.heads, s.head_dim);
  };
  const auto kb = block(), vb = block(), dkb = block(), dvb = block();
  const auto &kc = kb.view, &vc = vb.view, &dkc = dkb.view, &dvc = dvb.view;
  auto compute = [&](const std::vector<ShardWindow>& queries,
                     const std::vector<ShardWindow>& keys, const auto& bk, const auto& bv,
                     const auto& bdk, const auto& bdv) {
    for (const ShardWindow& qw : queries)
      for (const ShardWindow& kw : keys)
        if (!masked(qw, kw))
          plan_.backward_window(space, br, qw.begin, details::shard_rows(q, qw),
                                details::shard_rows(dout, qw), details::lse_rows(lse, qw),
                                details::lse_rows(delta, qw), details::shard_rows(dq, qw),
                                kw.begin, details::shard_rows(bk, kw), details::shard_rows(bv, kw),
                                details::shard_rows(bdk, kw), details::shard_rows(bdv, kw));
  };

  pack_rows<ExecSpace, T>(space, own, dilated::details::make_ref(k), kv[0].data());
  pack_rows<ExecSpace, T>(space, own, dilated::details::make_ref(v), kv[0].data() + e);
  publish(space);
  comm_->start_exchange(kv[0].data(), bytes, ring.next(), kv[1].data(), bytes, ring.prev());
  mark(space, "pack_kv");
  compute(early, mine, k, v, dk, dv);
  mark(space, "compute_own");
  int cur = 0;
  for (int t = 1; t < ring.size; ++t) {
    comm_->wait();  // kv[cur ^ 1]: K/V of source(t); acc_out (step t-1) packed and published
    mark(space, "wait_kv");
    if (t == 1) finish_return(space, dk, dv, pending);  // the previous branch's, arrived too
    mark(space, "return_wait_add");
    cur ^= 1;
    const int src = ring.source(t);
    const SparseRows theirs = rows_of(br, src);
    publish(space);  // kv[cur ^ 1] was read by the previous step's unpack
    if (t + 1 < ring.size)  // prefetch the next block's K/V
      comm_->start_exchange(kv[cur].data(), bytes, ring.next(), kv[cur ^ 1].data(), bytes,
                            ring.prev());
    if (t >= 2)  // pass on the previous block's sum; receive this block's (the own
                 // block of the previous rank, t = 1, has no travelling sum yet)
      comm_->start_exchange(acc_out.data(), bytes, ring.next(), acc_in.data(), bytes,
                            ring.prev());
    // The windowed backward adds into the kept rows only, and only they are
    // packed, so after the first step only the kept rows (1/r) need zeros
    // (every step zeroed the whole blocks before: A/B switch). The first step
    // zeroes the fresh pool blocks whole, so no row is ever uninitialised:
    // cuda_fa3's whole-window store (DILATED_FA3_WINDOW_ACC=whole) reads and
    // rewrites every row of the key window, and compute-sanitizer's initcheck
    // would report those reads of unkept rows.
    if (zero_whole_blocks_ || t == 1) {
      dilated::details::zero_tensor<ExecSpace, T>(space, dilated::details::make_ref(dkc));
      dilated::details::zero_tensor<ExecSpace, T>(space, dilated::details::make_ref(dvc));
    } else {
      zero_rows<ExecSpace, T>(space, theirs, dilated::details::make_ref(dkc));
      zero_rows<ExecSpace, T>(space, theirs, dilated::details::make_ref(dvc));
    }
    mark(space, "zero_block");
    if (any_unmasked(mine, layout_.windows(src))) {
      unpack_rows<ExecSpace, T>(space, theirs, kv[cur].data(), dilated::details::make_ref(kc),
                                false);
      unpack_rows<ExecSpace, T>(space, theirs, kv[cur].data() + e,
                                dilated::details::make_ref(vc), false);
      mark(space, "unpack_kv");
      compute(mine, layout_.windows(src), kc, vc, dkc, dvc);
      mark(space, "compute_ring");
    }
    comm_->wait();  // acc_in: the sum of the ranks before, for this block
    mark(space, "wait_acc");
    if (t >= 2) {
      unpack_rows<ExecSpace, T>(space, theirs, acc_in.data(), dilated::details::make_ref(dkc),
                                true);
      unpack_rows<ExecSpace, T>(space, theirs, acc_in.data() + e,
                                dilated::details::make_ref(dvc), true);
    }
    pack_rows<ExecSpace, T>(space, theirs, dilated::details::make_ref(dkc), acc_out.data());
    pack_rows<ExecSpace, T>(space, theirs, dilated::details::make_ref(dvc), acc_out.data() + e);
    publish(space);
    mark(space, "acc_add_pack");
  }
  // The last block's sum goes to its owner (the next rank); the own block's
  // arrives from the previous one. Completed by finish_return, later. A ring
  // of one rank (zigzag on one rank: both halves are the rank's own) has no
  // sum to return: step 0 put everything into dk, dv. (The earlier code sent
  // itself the never-written acc_out and added it: right only while the
  // pool's block happened to hold zeros.)
  if (ring.size == 1) {
    space.fence();  // the pool is not stream-ordered: kernels finish before blocks return
    return;
  }
  finish_return(space, dk, dv, pending);  // (done at t = 1 already)
  comm_->start_exchange(acc_out.data(), bytes, ring.next(), acc_in.data(), bytes, ring.prev());
  compute(late, mine, k, v, dk, dv);  // empty unless split_own: the return travels meanwhile
  mark(space, "compute_own");
  pending.in = std::move(in_block);
  pending.out = std::move(out_block);
  pending.rows = own;
  pending.open = true;
  space.fence();  // the pool is not stream-ordered: kernels finish before blocks return
}

}  // namespace dist
}  // namespace dilated
