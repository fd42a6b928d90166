// dist/seq_parallel_plan.hpp - dilated attention with the sequence sharded
// over the ranks of a communicator (sequence parallelism).
//
//   dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);           // user's MPI
//   dilated::dist::SeqParallelPlan<Kokkos::OpenMP> plan(cfg, {B, N, H, D}, comm);
//   plan.forward(q, k, v, out, lse);       // shards [B, N/P, H, D], lse [B, H, N/P]
//   plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
//
// Each rank computes exactly its shard of the single-rank result on the
// gathered sequence. Per branch: local branches (segments inside a shard) run
// on the shard alone; for cross-rank branches the ranks sharing a segment
// pass their sparsified K/V rows around a ring (double-buffered: the next
// block travels while the current one is computed), each block merged into
// (out, lse) by log-sum-exp - LongNet's Eq. 10 over the union of keys. The
// backward returns the K/V gradients along the same ring with the blocks'
// gradient accumulators (a reverse pass: every rank's contribution reaches
// the owner). Causal attention compares global positions and skips blocks
// that are fully masked. Kernels are the core's windowed calls: the portable
// Plan's for float/double, cuda_fa3's for bf16/fp16 on Kokkos::Cuda
// (dispatch/window_plan.hpp).
//
// Every call is collective and validated collectively first (see
// agreement.hpp): a bad input on any rank raises the same dilated::Error on
// every rank before any data moves. Calls fence their execution-space
// instance before returning (they free temporary exchange buffers).
#pragma once

#include <Kokkos_Core.hpp>
#include <string>
#include <type_traits>
#include <utility>

#include "dilated/plan.hpp"
#include "dispatch/window_plan.hpp"
#include "dist/agreement.hpp"
#include "dist/communicator.hpp"
#include "dist/phase_timer.hpp"
#include "dist/shard_layout.hpp"
#include "dist/sparse_rows.hpp"
#include "memory/kokkos_workspace.hpp"

namespace dilated {
namespace dist {

namespace details {
// The ranks [first, first + size) that share a cross-rank branch's segment,
// as a ring; `index` is this rank's place in it.
struct Ring {
  int first = 0, size = 1, index = 0;
  int next() const { return first + (index + 1) % size; }
  int prev() const { return first + (index + size - 1) % size; }
  // Whose K/V block this rank holds after t steps.
  int source(int t) const { return first + ((index - t) % size + size) % size; }
};

template <class V>
auto shard_rows(const V& v, const ShardWindow& w) {
  return Kokkos::subview(v, Kokkos::ALL, std::make_pair(w.row, w.row + w.len), Kokkos::ALL,
                         Kokkos::ALL);
}
template <class V>
auto lse_rows(const V& v, const ShardWindow& w) {
  return Kokkos::subview(v, Kokkos::ALL, Kokkos::ALL, std::make_pair(w.row, w.row + w.len));
}

// The last hop of a cross-rank branch's backward: this rank's own dK/dV
// accumulator, summed over the other ranks of the ring, on its way home
// (`in`), while this rank sends the last block's sum on (`out`). Started at
// the end of the branch and completed later, so the transfer runs during the
// compute that follows (see ring_backward.hpp).
template <class T, class MemorySpace>
struct PendingReturn {
  using Buffer = memory::PooledView<T*, Kokkos::LayoutRight, MemorySpace>;
  Buffer in, out;
  SparseRows rows;
  bool open = false;
};
}  // namespace details

template <class ExecSpace = Kokkos::DefaultExecutionSpace>
class SeqParallelPlan {
 public:
  using execution_space = ExecSpace;

  // Collective over `comm`, which must outlive the plan. `global` is the
  // shape of the gathered sequence; each rank's tensors are its shard.
  // Throws (on every rank alike) on any rule: the core's rules on the global
  // shape, the size rules of shard_layout.hpp, disagreement between ranks,
  // or a transport that cannot reach the execution space's memory.
  // `workspace`: where exchange buffers and temporaries come from (as for
  // Plan; null: the process-wide pool of the execution space's memory space).
  SeqParallelPlan(AttentionConfig config, ProblemShape global, Communicator& comm,
                  Layout layout = Layout::Contiguous,
                  memory::MemoryResource* workspace = nullptr)
      : comm_(&comm),
        config_(checked(config, global, comm, layout)),
        global_(global),
        layout_(config_, global_, comm.size(), layout),
        plan_(config_, global_, workspace) {}

  // For benchmarks and tests: false restores the earlier backward schedule
  // (branches in their order, each cross-rank branch waiting for its final
  // accumulator return before the next branch starts), whose exposed return
  // bench_dist_overlap reports beside the default. Results agree within
  // rounding (the order of the additions into dk, dv differs). Not to be
  // changed while a call runs.
  void set_overlap_accumulator_return(bool on) { overlap_return_ = on; }
  bool overlap_accumulator_return() const { return overlap_return_; }
  // For benchmarks: attribute the backward's time to its phases (fences at
  // every phase boundary; phase_timer.hpp). nullptr (the default) turns it off.
  void set_phase_timer(PhaseTimer* timer) { timer_ = timer; }
  // For A/B runs: true zeroes whole-shard dK/dV blocks at every ring step (the
  // earlier code) instead of only the rows the branch keeps.
  void set_zero_whole_blocks(bool on) { zero_whole_blocks_ = on; }

  const AttentionConfig& config() const { return config_; }
  const ProblemShape& global_shape() const { return global_; }
  const ShardLayout& layout() const { return layout_; }
  Communicator& communicator() const { return *comm_; }
  // The shape of every rank's shard tensors: [batch, N / P, heads, head_dim].
  ProblemShape local_shape() const {
    ProblemShape s = global_;
    s.seq_len = layout_.local_len();
    return s;
  }
  // Which kernels compute tensors of type T, and why (cuda_fa3 for
  // bf16/fp16 Views on Kokkos::Cuda where it supports the problem).
  template <class T>
  std::string compute_backend() const { return plan_.template backend<T>(); }
  // The global positions this rank's shard rows hold.
  std::vector<ShardWindow> local_windows() const { return layout_.windows(comm_->rank()); }

  // out, lse of this rank's queries (lse: [batch, heads, N / P]).
  template <class Q, class K, class V, class O, class L>
  void forward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out,
               const L& lse) const;
  template <class Q, class K, class V, class O, class L>
  void forward(const Q& q, const K& k, const V& v, const O& out, const L& lse) const {
    forward(ExecSpace(), q, k, v, out, lse);
  }

  // Gradients of this rank's shard of q, k, v (dk, dv include every other
  // rank's contribution), from forward's out and lse and this rank's dout.
  // Cross-rank branches run first and each one's final dK/dV accumulator
  // return overlaps the compute after it (the next cross-rank branch's first
  // step, or the local branches; when these are light or absent, the last
  // cross-rank branch computes half of its own block while its return travels).
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out,
                const L& lse, const DO& dout, const DQ& dq, const DK& dk, const DV& dv) const;
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const Q& q, const K& k, const V& v, const O& out, const L& lse, const DO& dout,
                const DQ& dq, const DK& dk, const DV& dv) const {
    backward(ExecSpace(), q, k, v, out, lse, dout, dq, dk, dv);
  }

 private:
  static AttentionConfig checked(const AttentionConfig& config, const ProblemShape& global,
                                 Communicator& comm, Layout layout) {
    const std::vector<AgreedValue> agreed = {
        {"the config hash (branches, causal, scale, dropout, head mode)", config_hash(config)},
        {"batch", global.batch},
        {"seq_len", global.seq_len},
        {"heads", global.heads},
        {"head_dim", global.head_dim},
        {"layout", static_cast<std::int64_t>(layout)}};
    agree(comm, agreed, [&] {
      check_size_rules(config, global, comm.size(), layout);
      const bool host = std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value;
      if (host ? !comm.accepts_host_memory() : !comm.accepts_device_memory())
        throw Error("dist.transport_memory",
                    std::string("the ") + comm.name() + " transport cannot reach " +
                        ExecSpace::memory_space::name() +
                        " memory (MPI: cuda_aware = true with a CUDA-aware MPI, or a build "
                        "with DILATED_ENABLE_CUDA, which stages device buffers through pinned "
                        "host memory; NCCL: device memory only)");
    });
    return config;
  }

  // 16-bit shards compute only through cuda_fa3's windowed calls (the portable
  // kernels refuse 16-bit windows: each window would round the outputs once
  // more). Part of the collective check, so a problem cuda_fa3 does not take
  // (a GPU other than sm_90, an unsupported head_dim) or does not take in
  // windows (its own window rules, and for `backward` its backward support:
  // cuda_fa3::Plan::window_support) is refused on every rank before any
  // output is written or any transfer starts, not at the first window with
  // the ring in flight.
  template <class T>
  void check_window_backend(bool backward) const {
    if constexpr (dilated::details::is_half_type<std::remove_cv_t<T>>::value) {
      const std::string why = plan_.template window_refusal<T>(backward);
      if (!why.empty())
        throw Error("dist.no_16bit_window_backend",
                    "16-bit shards are computed by cuda_fa3's windowed calls, which this "
                    "problem cannot use (" + why + "); pass float Views instead");
    } else {
      (void)backward;
    }
  }

  // Collective verdict on a call's tensors, before anything is written.
  template <class Checks>
  void agree_on_call(int operation, std::int64_t dtype_bytes, Checks&& checks) const {
    agree(*comm_, {{"the operation (1 forward, 2 backward)", operation},
                   {"the tensor dtype size", dtype_bytes}},
          checks);
  }
  details::Ring ring_of(int branch) const {
    details::Ring r;
    r.first = layout_.group_first(branch, comm_->rank());
    r.size = layout_.branch(branch).group_size;
    r.index = comm_->rank() - r.first;
    return r;
  }
  SparseRows rows_of(int branch, int rank) const {
    return make_sparse_rows(plan_params_pattern(), branch, global_.batch, global_.head_dim,
                            layout_.windows(rank));
  }
  PatternParams plan_params_pattern() const { return make_pattern(config_, global_); }
  // Keys entirely after the queries: nothing to compute under causal masking.
  bool masked(const ShardWindow& qw, const ShardWindow& kw) const {
    return config_.causal && kw.begin >= qw.begin + qw.len;
  }
  bool any_unmasked(const std::vector<ShardWindow>& qs, const std::vector<ShardWindow>& ks) const {
    for (const ShardWindow& qw : qs)
      for (const ShardWindow& kw : ks)
        if (!masked(qw, kw)) return true;
    return false;
  }
  // Before a buffer a kernel wrote is handed to a transport that is not
  // ordered with the execution space (MPI).
  void publish(const ExecSpace& space) const {
    if (!comm_->stream_ordered()) space.fence();
  }
  // Phase boundary for the optional timer: everything queued so far counts
  // towards `phase`.
  void mark(const ExecSpace& space, const char* phase) const {
    if (!timer_) return;
    space.fence();
    timer_->lap(phase);
  }

  template <class Q, class K, class V, class O, class L>
  void forward_cross_rank(const ExecSpace& space, int branch, const Q& q, const K& k, const V& v,
                          const O& out, const L& lse) const;
  template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV,
            class Pending>
  void backward_cross_rank(const ExecSpace& space, int branch, const Q& q, const K& k,
                           const V& v, const DO& dout, const L& lse, const DL& delta,
                           const DQ& dq, const DK& dk, const DV& dv, Pending& pending,
                           bool split_own) const;
  // Completes a started return: waits for it, adds it into dk, dv, and gives
  // its buffers back (after a fence: the pool is not stream-ordered).
  template <class DK, class DV, class Pending>
  void finish_return(const ExecSpace& space, const DK& dk, const DV& dv, Pending& pending) const;

  Communicator* comm_;
  AttentionConfig config_;
  ProblemShape global_;
  ShardLayout layout_;
  // The windowed calls: the portable kernels for float/double Views,
  // cuda_fa3 for 16-bit Views on Kokkos::Cuda (dispatch/window_plan.hpp).
  WindowPlan<ExecSpace> plan_;
  bool overlap_return_ = true;
  bool zero_whole_blocks_ = false;
  PhaseTimer* timer_ = nullptr;
};

}  // namespace dist
}  // namespace dilated

#include "dist/ring_backward.hpp"
#include "dist/ring_forward.hpp"
