// dilated/plan.hpp - the user-facing object: validate once, then run forward
// and backward on Kokkos Views shaped [batch, seq, heads, head_dim].
//
// Thread safety: a Plan is immutable after construction and its calls keep no
// shared mutable state (no caches, no RNG state: dropout is counter-based), so
// several host threads may call one plan concurrently, each on its own
// execution-space instance. forward() is asynchronous with respect to that
// instance, exactly like Kokkos::parallel_for; fence it before reading
// results. backward() fences its instance before returning, because it gives
// its workspace back to the pool it took it from.
//
// Workspaces: backward's `delta` buffer comes from a memory resource (the
// process-wide pool of the execution space's memory space, src/memory, or one
// passed to the constructor), so repeated calls allocate nothing from the
// system once the pool holds a block of that size.
//
// Element types (details/storage_types.hpp): float and double, and Kokkos'
// half_t / bhalf_t where this Kokkos makes them real 16-bit types. 16-bit
// tensors compute in float (lse and delta are float) and every output element
// is rounded once: backward accumulates dq, dk, dv in float, one chunk of
// half_merge_rows() rows at a time (block-sparse plans: whole tensors), and
// rounds each chunk; forward with several branches merges them in a float
// accumulator (each branch's log-sum-exp merge reads and rewrites out, which
// in 16 bits would round once per branch), one chunk of query rows at a time
// (half_merge_rows), and rounds each chunk into out.
// Those calls fence their instance before returning, like backward.
#pragma once

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "dilated/config.hpp"
#include "dilated/cost.hpp"
#include "dilated/details/backward_fused_kernel.hpp"
#include "dilated/details/backward_kernels.hpp"
#include "dilated/details/block_sparse_storage.hpp"
#include "dilated/details/elementwise_kernels.hpp"
#include "dilated/details/forward_kernel.hpp"
#include "dilated/details/forward_kernel_gpu_launch.hpp"
#include "dilated/details/gpu_forward_variant.hpp"
#include "dilated/details/kernel_params.hpp"
#include "dilated/pattern.hpp"
#include "dilated/view_adapter.hpp"
#include "memory/kokkos_workspace.hpp"

namespace dilated {

namespace details {
struct PlanTestAccess;  // lets tests run the device backward scheme on host backends
}

template <class ExecSpace = Kokkos::DefaultExecutionSpace>
class Plan {
 public:
  using execution_space = ExecSpace;

  // Validates everything about the config and shape, and that the kernels'
  // tiles fit this backend's team scratch; throws dilated::Error.
  // `workspace`: where backward's temporary buffers come from (must outlive
  // the plan and hold memory accessible from ExecSpace); null: the
  // process-wide workspace pool of ExecSpace's memory space.
  Plan(AttentionConfig config, ProblemShape shape, memory::MemoryResource* workspace = nullptr)
      : config_(std::move(config)), shape_(shape),
        workspace_(workspace ? workspace
                             : &memory::workspace_stack<typename ExecSpace::memory_space>()
                                    .resource()) {
    validate(config_, shape_);
    params_.pattern = make_pattern(config_, shape_);
    if (config_.block_sparse)
      block_sparse_.attach(*config_.block_sparse, shape_.seq_len, &params_.pattern.block_sparse);
    params_.dropout = make_dropout(config_.dropout_p, config_.dropout_seed);
    params_.scale = effective_softmax_scale(config_, shape_.head_dim);
    params_.output_scale = params_.pattern.output_scale();
    params_.causal = config_.causal;
    params_.batch = shape_.batch;
    params_.heads = shape_.heads;
    params_.head_dim = shape_.head_dim;
    forward_level_ = scratch_level_for(
        "forward", details::ForwardBranchKernel<ExecSpace, float>::scratch_bytes(params_) *
                       sizeof(details::accum_t<double>) / sizeof(float));
    dq_level_ = scratch_level_for(
        "backward dq", details::BackwardDQKernel<ExecSpace, float>::scratch_bytes(params_) *
                           sizeof(details::accum_t<double>) / sizeof(float));
    dkv_level_ = scratch_level_for(
        "backward dk/dv", details::BackwardDKVKernel<ExecSpace, float>::scratch_bytes(params_) *
                              sizeof(details::accum_t<double>) / sizeof(float));
    // DILATED_PORTABLE_GPU_FORWARD (A/B runs on CUDA): the forward kernel
    // variant, see gpu_forward_variant.hpp.
    gpu_forward_ = details::parse_gpu_forward_variant(std::getenv("DILATED_PORTABLE_GPU_FORWARD"));
    if constexpr (details::is_host_space<ExecSpace>())  // fused backward: host backends only
      fused_level_ = scratch_level_for(
          "backward", details::BackwardFusedKernel<ExecSpace, float>::scratch_bytes(params_) *
                          sizeof(details::accum_t<double>) / sizeof(float));
  }

  const AttentionConfig& config() const { return config_; }
  memory::MemoryResource& workspace_resource() const { return *workspace_; }
  const ProblemShape& shape() const { return shape_; }
  double softmax_scale() const { return params_.scale; }
  // Which kernels run, and why (the CUDA FA3 backend arrives with its issue).
  std::string backend() const { return std::string("portable/") + ExecSpace::name(); }
  std::string backend_reason() const {
    return "portable Kokkos kernels on " + std::string(ExecSpace::name()) +
           "; the cuda_fa3 backend is not part of this build";
  }

  // out[b, p, h, :] = attention output; lse[b, h, p] = log of its softmax
  // denominator (-inf where no branch keeps (p, h); out is 0 there).
  template <class Q, class K, class V, class O, class L>
  void forward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out,
               const L& lse) const {
    using T = typename O::non_const_value_type;
    static_assert(!std::is_const<typename O::value_type>::value &&
                      !std::is_const<typename L::value_type>::value,
                  "dilated::Plan::forward: out and lse must be writable Views");
    static_check_io<T, Q, K, V, O>();
    static_check_lse<T, L>();
    const auto qr = details::make_ref(q);
    const auto kr = details::make_ref(k);
    const auto vr = details::make_ref(v);
    const auto outr = details::make_ref(out);
    const auto lser = details::make_ref(lse);
    details::check_bshd("q", qr, shape_);
    details::check_bshd("k", kr, shape_);
    details::check_bshd("v", vr, shape_);
    details::check_bshd("out", outr, shape_);
    details::check_lse("lse", lser, shape_);
    details::check_no_self_overlap("out", outr);
    details::check_no_self_overlap("lse", lser);
    details::check_no_alias("out", outr, "q", qr);
    details::check_no_alias("out", outr, "k", kr);
    details::check_no_alias("out", outr, "v", vr);
    details::check_no_alias("out", outr, "lse", lser);
    details::check_no_alias("lse", lser, "q", qr);
    details::check_no_alias("lse", lser, "k", kr);
    details::check_no_alias("lse", lser, "v", vr);
    // --- nothing above writes; everything below may ---
    if constexpr (details::is_half_storage<T>::value) {
      if (params_.pattern.num_branches > 1) {  // merge in float, round once
        forward_merged_in_float<T>(space, qr, kr, vr, outr, lser);
        return;
      }
    }
    details::init_forward_outputs<ExecSpace, T>(space, outr, lser);
    for (int br = 0; br < params_.pattern.num_branches; ++br)
      launch_forward_branch<T>(space, "dilated::forward_branch", qr, kr, vr, outr, lser, br,
                               whole_sequence());
  }
  template <class Q, class K, class V, class O, class L>
  void forward(const Q& q, const K& k, const V& v, const O& out, const L& lse) const {
    forward(ExecSpace(), q, k, v, out, lse);
  }

  // Gradients of sum(dout * out) w.r.t. q, k, v, given forward's out and lse.
  // Exact for the merged function (merge weights are differentiated too).
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out,
                const L& lse, const DO& dout, const DQ& dq, const DK& dk, const DV& dv) const {
    backward_impl(space, q, k, v, out, lse, dout, dq, dk, dv, /*two_kernel=*/false);
  }
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const Q& q, const K& k, const V& v, const O& out, const L& lse, const DO& dout,
                const DQ& dq, const DK& dk, const DV& dv) const {
    backward(ExecSpace(), q, k, v, out, lse, dout, dq, dk, dv);
  }

  // --- Windowed calls: the building blocks of sequence parallelism ----------
  // One branch, with queries and keys taken from windows of the sequence:
  // q, out, lse (and dout, delta, dq) hold positions [q_begin, q_begin +
  // q.extent(1)); k, v (and dk, dv) hold [k_begin, k_begin + k.extent(1)).
  // Pairs interact exactly as in forward() (same segment, same offset,
  // causal by position). src/dist composes a layer from these calls on a
  // rank's own shard and the shards it receives.
  //
  // forward_window merges the window pair's attention into (out, lse) by
  // log-sum-exp; starting from out = 0, lse = -inf and calling it for every
  // branch and every key window gives forward()'s result. Asynchronous, like
  // forward(). Windowed calls take float or double tensors only: each call
  // reads and rewrites out / dq / dk / dv, which 16-bit storage would round
  // once per call.
  template <class Q, class K, class V, class O, class L>
  void forward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                      const O& out, const L& lse, std::int64_t k_begin, const K& k,
                      const V& v) const {
    using T = typename O::non_const_value_type;
    static_check_io<T, Q, K, V, O>();
    static_check_window_type<T>();
    static_check_lse<T, L>();
    const auto qr = details::make_ref(q);
    const auto kr = details::make_ref(k);
    const auto vr = details::make_ref(v);
    const auto outr = details::make_ref(out);
    const auto lser = details::make_ref(lse);
    check_branch(branch);
    const Window w{q_begin, qr.extent[1], k_begin, kr.extent[1]};
    check_window("q", qr, w.q_begin, w.q_len);
    check_window("out", outr, w.q_begin, w.q_len);
    check_window("k", kr, w.k_begin, w.k_len);
    check_window("v", vr, w.k_begin, w.k_len);
    ProblemShape ls = shape_;
    ls.seq_len = w.q_len;
    details::check_lse("lse", lser, ls);
    details::check_no_alias("out", outr, "q", qr);
    details::check_no_alias("out", outr, "k", kr);
    details::check_no_alias("out", outr, "v", vr);
    details::check_no_alias("out", outr, "lse", lser);
    // --- nothing above writes; everything below may ---
    launch_forward_branch<T>(space, "dilated::forward_window", qr, kr, vr, outr, lser, branch, w);
  }

  // Adds the window pair's share of the gradient into dq, dk, dv (the caller
  // zeroes them once). lse is forward's final LSE of the queries and delta =
  // rowsum(dout * out) of the queries ([batch, heads, rows], accumulation type),
  // from backward_delta(). Asynchronous.
  template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV>
  void backward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                       const DO& dout, const L& lse, const DL& delta, const DQ& dq,
                       std::int64_t k_begin, const K& k, const V& v, const DK& dk,
                       const DV& dv) const {
    backward_window_impl(false, space, branch, q_begin, q, dout, lse, delta, dq, k_begin, k, v,
                         dk, dv);
  }

 private:
  // two_kernel: the dQ / dK-dV kernel pair (what device backends run) even on
  // a host backend; tests reach it through PlanTestAccess.
  template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV>
  void backward_window_impl(bool two_kernel, const ExecSpace& space, int branch,
                            std::int64_t q_begin, const Q& q, const DO& dout, const L& lse,
                            const DL& delta, const DQ& dq, std::int64_t k_begin, const K& k,
                            const V& v, const DK& dk, const DV& dv) const {
    using T = typename DQ::non_const_value_type;
    static_check_io<T, Q, K, V, DQ>();
    static_check_io<T, DO, DK, DV>();
    static_check_window_type<T>();
    static_check_lse<T, L>();
    static_check_lse<T, DL>();
    details::BackwardTensors<T> t;
    t.q = details::make_ref(q);
    t.k = details::make_ref(k);
    t.v = details::make_ref(v);
    t.dout = details::make_ref(dout);
    t.lse = details::make_ref(lse);
    t.delta = details::make_ref(delta);
    t.dq = details::make_ref(dq);
    t.dk = details::make_ref(dk);
    t.dv = details::make_ref(dv);
    check_branch(branch);
    const Window w{q_begin, t.q.extent[1], k_begin, t.k.extent[1]};
    const char* qn[] = {"q", "dout", "dq"};
    const TensorRef<const T, 4> qs[] = {t.q, t.dout, t.dq};
    for (int i = 0; i < 3; ++i) check_window(qn[i], qs[i], w.q_begin, w.q_len);
    const char* kn[] = {"k", "v", "dk", "dv"};
    const TensorRef<const T, 4> ks[] = {t.k, t.v, t.dk, t.dv};
    for (int i = 0; i < 4; ++i) check_window(kn[i], ks[i], w.k_begin, w.k_len);
    ProblemShape ls = shape_;
    ls.seq_len = w.q_len;
    details::check_lse("lse", t.lse, ls);
    details::check_lse("delta", t.delta, ls);
    const TensorRef<const T, 4> ins[] = {t.q, t.dout, t.k, t.v};
    const char* in_names[] = {"q", "dout", "k", "v"};
    const TensorRef<const T, 4> outs[] = {t.dq, t.dk, t.dv};
    const char* out_names[] = {"dq", "dk", "dv"};
    for (int g = 0; g < 3; ++g) {
      for (int i = 0; i < 4; ++i) details::check_no_alias(out_names[g], outs[g], in_names[i], ins[i]);
      for (int i = 0; i < 3; ++i)
        if (i != g) details::check_no_alias(out_names[g], outs[g], out_names[i], outs[i]);
    }
    // --- nothing above writes; everything below may ---
    launch_backward_branch(space, t, branch, w, two_kernel);
  }

 public:

  // delta = rowsum(dout * out) per (batch, head, position) of a query window,
  // the input backward_window needs besides forward's lse. Asynchronous.
  template <class O, class DO, class DL>
  void backward_delta(const ExecSpace& space, const O& out, const DO& dout,
                      const DL& delta) const {
    using T = typename O::non_const_value_type;
    static_check_io<T, O, DO>();
    static_check_lse<T, DL>();
    const TensorRef<const T, 4> outr = details::make_ref(out), doutr = details::make_ref(dout);
    const auto dr = details::make_ref(delta);
    check_window("out", outr, 0, outr.extent[1]);
    check_window("dout", doutr, 0, outr.extent[1]);
    ProblemShape ls = shape_;
    ls.seq_len = outr.extent[1];
    details::check_lse("delta", dr, ls);
    details::compute_delta<ExecSpace, T>(space, outr, doutr, dr);
  }

 private:
  friend struct details::PlanTestAccess;

  // two_kernel: use the dQ / dK-dV kernel pair (what device backends run)
  // even on a host backend, where the fused one-pass kernel is the default.
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward_impl(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out,
                     const L& lse, const DO& dout, const DQ& dq, const DK& dk, const DV& dv,
                     bool two_kernel) const {
    using T = typename DQ::non_const_value_type;
    using Acc = details::accum_t<T>;
    static_assert(!std::is_const<typename DQ::value_type>::value &&
                      !std::is_const<typename DK::value_type>::value &&
                      !std::is_const<typename DV::value_type>::value,
                  "dilated::Plan::backward: dq, dk and dv must be writable Views");
    static_check_io<T, Q, K, V, DQ>();
    static_check_io<T, O, DO, DK, DV>();
    static_check_lse<T, L>();
    details::BackwardTensors<T> t;
    t.q = details::make_ref(q);
    t.k = details::make_ref(k);
    t.v = details::make_ref(v);
    t.dout = details::make_ref(dout);
    t.lse = details::make_ref(lse);
    t.dq = details::make_ref(dq);
    t.dk = details::make_ref(dk);
    t.dv = details::make_ref(dv);
    const TensorRef<const T, 4> outr = details::make_ref(out);
    const char* names[] = {"q", "k", "v", "out", "dout", "dq", "dk", "dv"};
    const TensorRef<const T, 4> all[] = {t.q, t.k, t.v, outr, t.dout, t.dq, t.dk, t.dv};
    for (int i = 0; i < 8; ++i) details::check_bshd(names[i], all[i], shape_);
    details::check_lse("lse", t.lse, shape_);
    for (int g = 5; g < 8; ++g) {
      details::check_no_self_overlap(names[g], all[g]);
      for (int i = 0; i < 8; ++i)
        if (i != g) details::check_no_alias(names[g], all[g], names[i], all[i]);
      details::check_no_alias(names[g], all[g], "lse", t.lse);
    }
    // --- nothing above writes; everything below may ---
    // Every workspace is taken before the first launch: an allocation that
    // throws after compute_delta was launched would return delta's block to
    // its pool (not stream-ordered) with the kernel still reading it. 16-bit
    // storage: float gradient accumulators, rounded to the caller's once.
    memory::Workspace grad_block;
    // Chunked accumulators need windowed launches, which block-sparse plans
    // lack: those keep whole-sequence ones (3 B*N*H*D floats).
    const bool chunked_grads = !params_.pattern.block_sparse.enabled();
    const std::int64_t grad_rows = half_merge_rows(shape_.seq_len);
    if constexpr (details::is_half_storage<T>::value)
      grad_block = chunked_grads ? memory::Workspace(*workspace_,
                                                     2 * sizeof(float) * shape_.batch * grad_rows *
                                                         shape_.heads * shape_.head_dim,
                                                     memory::kDefaultAlignment,
                                                     memory::stream_of(space))
                                 : float_workspace(space, 3);
    const memory::Workspace delta_block(
        *workspace_, sizeof(Acc) * shape_.batch * shape_.heads * shape_.seq_len,
        memory::kDefaultAlignment, memory::stream_of(space));
    Kokkos::View<Acc***, Kokkos::LayoutRight, typename ExecSpace::memory_space,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        delta(static_cast<Acc*>(delta_block.data()), shape_.batch, shape_.heads, shape_.seq_len);
    auto delta_ref = details::make_ref(delta);
    t.delta = delta_ref;
    details::compute_delta<ExecSpace, T>(space, outr, t.dout, delta_ref);
    if constexpr (details::is_half_storage<T>::value) {
      if (chunked_grads) {
        backward_in_float_chunks(space, t, grad_block, grad_rows);
        space.fence();  // both workspaces return to their pool at the end of this scope
        return;
      }
      // Every branch (and, in the fused kernel, every key tile) adds into the
      // gradients: accumulate them in float (grad_block) and round once.
      const details::BackwardTensors<T, float> tf{t.q, t.k, t.v, t.dout, t.lse, t.delta,
                                                  float_tensor(grad_block, 0),
                                                  float_tensor(grad_block, 1),
                                                  float_tensor(grad_block, 2)};
      details::zero_tensor<ExecSpace, float>(space, tf.dq);
      details::zero_tensor<ExecSpace, float>(space, tf.dk);
      details::zero_tensor<ExecSpace, float>(space, tf.dv);
      for (int br = 0; br < params_.pattern.num_branches; ++br)
        launch_backward_branch(space, tf, br, whole_sequence(), two_kernel);
      details::convert_tensor<ExecSpace, float, T>(space, tf.dq, t.dq);
      details::convert_tensor<ExecSpace, float, T>(space, tf.dk, t.dk);
      details::convert_tensor<ExecSpace, float, T>(space, tf.dv, t.dv);
      space.fence();  // both workspaces return to their pool at the end of this scope
      return;
    }
    details::zero_tensor<ExecSpace, T>(space, t.dq);
    details::zero_tensor<ExecSpace, T>(space, t.dk);
    details::zero_tensor<ExecSpace, T>(space, t.dv);
    for (int br = 0; br < params_.pattern.num_branches; ++br)
      launch_backward_branch(space, t, br, whole_sequence(), two_kernel);
    // The workspace returns to its pool when `delta_block` goes out of scope;
    // make sure the kernels that read it have finished.
    space.fence();
  }

  // 16-bit storage with several branches: each branch's log-sum-exp merge
  // reads and rewrites the running output, so the merge runs in float and is
  // rounded to the caller's `out` once. The float accumulator holds a chunk
  // of query rows at a time (all branches, all keys: a windowed launch per
  // branch), so it stays small: half_merge_rows() rows, about 1% of the Q+K+V
  // bytes at long sequences instead of two thirds for a whole-sequence copy.
  template <class T, class QR, class KR, class VR, class LR>
  void forward_merged_in_float(const ExecSpace& space, const QR& qr, const KR& kr,
                               const VR& vr, const TensorRef<T, 4>& outr, const LR& lser) const {
    const std::int64_t n = shape_.seq_len, rows = half_merge_rows(n);
    const memory::Workspace acc_block(
        *workspace_, sizeof(float) * shape_.batch * rows * shape_.heads * shape_.head_dim,
        memory::kDefaultAlignment, memory::stream_of(space));
    for (std::int64_t q0 = 0; q0 < n; q0 += rows) {
      const Window w{q0, std::min(rows, n - q0), 0, n};
      Kokkos::View<float****, Kokkos::LayoutRight, typename ExecSpace::memory_space,
                   Kokkos::MemoryTraits<Kokkos::Unmanaged>>
          acc(static_cast<float*>(acc_block.data()), shape_.batch, w.q_len, shape_.heads,
              shape_.head_dim);
      const auto accr = details::make_ref(acc);
      const auto qw = window_along(qr, 1, q0, w.q_len);
      const auto lw = window_along(lser, 2, q0, w.q_len);
      details::init_forward_outputs<ExecSpace, float>(space, accr, lw);
      for (int br = 0; br < params_.pattern.num_branches; ++br)
        launch_forward_branch<T>(space, "dilated::forward_branch", qw, kr, vr, accr, lw, br, w);
      details::convert_tensor<ExecSpace, float, T>(space, accr, window_along(outr, 1, q0, w.q_len));
    }  // chunks run in stream order on `space`, so one block serves them all
    space.fence();  // the workspace returns to its pool at the end of this scope
  }

 public:
  // Query rows per float-merge chunk of a 16-bit forward (see above): 1/64 of
  // the sequence, at least 4096 rows (fewer launches on short sequences).
  static std::int64_t half_merge_rows(std::int64_t seq_len) {
    return std::min(seq_len, std::max<std::int64_t>(4096, (seq_len + 63) / 64));
  }

 private:
  // 16-bit storage: every branch adds into the gradients, so they accumulate
  // in float and are rounded once - one chunk of half_merge_rows() rows at a
  // time, so the accumulators stay small (two chunks, about 2% of the Q+K+V
  // bytes at long sequences instead of twice them): dq of a chunk of queries
  // against all keys, then dk and dv of a chunk of keys against all queries
  // (the two-kernel scheme's kernels on window pairs).
  template <class T>
  void backward_in_float_chunks(const ExecSpace& space, const details::BackwardTensors<T>& t,
                                const memory::Workspace& block, std::int64_t rows) const {
    const std::int64_t n = shape_.seq_len;
    for (std::int64_t c0 = 0; c0 < n; c0 += rows) {  // stream order: one block serves all
      const std::int64_t len = std::min(rows, n - c0);
      const TensorRef<float, 4> acc0 = float_rows(block, 0, rows, len);
      const TensorRef<float, 4> acc1 = float_rows(block, 1, rows, len);
      // dq of queries [c0, c0 + len); the dq kernel writes no dk / dv.
      const details::BackwardTensors<T, float> tq{
          window_along(t.q, 1, c0, len),   t.k, t.v, window_along(t.dout, 1, c0, len),
          window_along(t.lse, 2, c0, len), window_along(t.delta, 2, c0, len),
          acc0,                            acc0, acc1};
      details::zero_tensor<ExecSpace, float>(space, acc0);
      for (int br = 0; br < params_.pattern.num_branches; ++br)
        launch_backward_dq(space, tq, br, Window{c0, len, 0, n});
      details::convert_tensor<ExecSpace, float, T>(space, acc0, window_along(t.dq, 1, c0, len));
      // dk, dv of keys [c0, c0 + len); the dk/dv kernel writes no dq.
      const details::BackwardTensors<T, float> tk{
          t.q,     window_along(t.k, 1, c0, len), window_along(t.v, 1, c0, len), t.dout, t.lse,
          t.delta, acc0,                          acc0,                          acc1};
      details::zero_tensor<ExecSpace, float>(space, acc0);
      details::zero_tensor<ExecSpace, float>(space, acc1);
      for (int br = 0; br < params_.pattern.num_branches; ++br)
        launch_backward_dkv(space, tk, br, Window{0, n, c0, len});
      details::convert_tensor<ExecSpace, float, T>(space, acc0, window_along(t.dk, 1, c0, len));
      details::convert_tensor<ExecSpace, float, T>(space, acc1, window_along(t.dv, 1, c0, len));
    }
  }
  // The i-th [batch, len, heads, head_dim] float tensor of a block laid out in
  // chunks of `rows` rows.
  TensorRef<float, 4> float_rows(const memory::Workspace& block, int i, std::int64_t rows,
                                 std::int64_t len) const {
    Kokkos::View<float****, Kokkos::LayoutRight, typename ExecSpace::memory_space,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        v(static_cast<float*>(block.data()) +
              i * shape_.batch * rows * shape_.heads * shape_.head_dim,
          shape_.batch, len, shape_.heads, shape_.head_dim);
    return details::make_ref(v);
  }

  // `count` float tensors of the plan's shape in one workspace block (16-bit
  // storage: the accumulators that are rounded to the caller's tensors once).
  memory::Workspace float_workspace(const ExecSpace& space, int count) const {
    return memory::Workspace(*workspace_,
                             sizeof(float) * count * shape_.batch * shape_.seq_len *
                                 shape_.heads * shape_.head_dim,
                             memory::kDefaultAlignment, memory::stream_of(space));
  }
  // The i-th of them, [batch, seq, heads, head_dim] LayoutRight.
  TensorRef<float, 4> float_tensor(const memory::Workspace& block, int i) const {
    const std::int64_t n = shape_.batch * shape_.seq_len * shape_.heads * shape_.head_dim;
    Kokkos::View<float****, Kokkos::LayoutRight, typename ExecSpace::memory_space,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        v(static_cast<float*>(block.data()) + i * n, shape_.batch, shape_.seq_len, shape_.heads,
          shape_.head_dim);
    return details::make_ref(v);
  }

  // Which positions the query-side and key-side tensors of a call hold.
  struct Window {
    std::int64_t q_begin, q_len, k_begin, k_len;
  };
  Window whole_sequence() const { return {0, shape_.seq_len, 0, shape_.seq_len}; }

  // Launch parameters of one branch on a window pair: only the segments that
  // both windows touch are visited. Teams own query tiles, or key tiles (the
  // dk/dv kernel) when `key_tiles`.
  // tile_q: query rows per team (0: the plan's; the GPU-shaped forward's differ).
  details::KernelParams branch_params(int br, int scratch_level, bool key_tiles, const Window& w,
                                      std::int64_t tile_q = 0) const {
    details::KernelParams p = params_;
    if (tile_q > 0) p.tile_q = tile_q;
    p.branch = br;
    p.scratch_level = scratch_level;
    p.q_begin = w.q_begin;
    p.q_end = w.q_begin + w.q_len;
    p.k_begin = w.k_begin;
    p.k_end = w.k_begin + w.k_len;
    const std::int64_t seg = params_.pattern.segment_length[br];
    const std::int64_t first = std::max(p.q_begin, p.k_begin) / seg;
    const std::int64_t last = std::min(p.q_end, p.k_end) - 1;  // < first*seg: no shared segment
    p.first_segment = first;
    p.segments = last < first * seg ? 0 : last / seg - first + 1;
    const std::int64_t tile = key_tiles ? p.tile_k : p.tile_q;
    p.tiles_per_segment =
        (params_.pattern.max_kept_in_window(br, key_tiles ? w.k_len : w.q_len) + tile - 1) / tile;
    if (params_.pattern.block_sparse.enabled())  // tiles per block, never across one
      p.tiles_per_segment = params_.pattern.block_sparse.num_tiles(key_tiles, tile);
    return p;
  }
  details::KernelParams branch_params(int br, int scratch_level, bool key_tiles) const {
    return branch_params(br, scratch_level, key_tiles, whole_sequence());
  }

  // One branch of the forward on one window pair, merged into (out, lse).
  // Kokkos::Cuda with float tensors runs a GPU-shaped kernel
  // (forward_kernel_gpu_launch.hpp, variant gpu_forward_) where it applies;
  // everything else, and every call under DILATED_PORTABLE_GPU_FORWARD=classic,
  // ForwardBranchKernel.
  // outr: T, or the float accumulator of a 16-bit forward (see forward()).
  template <class T, class QR, class KR, class VR, class O, class LR>
  void launch_forward_branch(const ExecSpace& space, const char* label, const QR& qr,
                             const KR& kr, const VR& vr, const TensorRef<O, 4>& outr,
                             const LR& lser, int br, const Window& w) const {
#if defined(KOKKOS_ENABLE_CUDA)
    if constexpr (std::is_same<ExecSpace, Kokkos::Cuda>::value && std::is_same<T, float>::value) {
      if (gpu_forward_ != details::GpuForwardVariant::kClassic &&
          details::gpu_forward_applies(shape_.head_dim)) {
        const details::KernelParams pg = branch_params(br, 0, false, w, details::kGpuTileQ);
        if (pg.segments > 0)
          details::launch_forward_gpu(space, label, qr, kr, vr, outr, lser, pg, gpu_forward_);
        return;
      }
    }
#endif
    details::ForwardBranchKernel<ExecSpace, T, O> f{qr, kr, vr, outr, lser,
                                                    branch_params(br, forward_level_, false, w)};
    if (f.p.segments > 0)
      details::launch_teams(space, label, f, details::league_size(f.p), f.scratch_bytes(f.p));
  }

  // The backward kernels of one branch on one window pair; they add into
  // t.dq, t.dk, t.dv (of type G: T, or float for 16-bit T).
  template <class T, class G>
  void launch_backward_branch(const ExecSpace& space, const details::BackwardTensors<T, G>& t,
                              int br, const Window& w, bool two_kernel) const {
    if constexpr (details::is_host_space<ExecSpace>()) {
      // One pass per segment: S and dP computed once per tile pair (never
      // instantiated for device spaces, which keep the two-kernel scheme).
      if (!two_kernel) {
        details::KernelParams pf = branch_params(br, fused_level_, true, w);
        pf.tiles_per_segment = 1;
        details::BackwardFusedKernel<ExecSpace, T, G> ff{t, pf};
        details::launch_teams(space, "dilated::backward_fused", ff, details::league_size(ff.p),
                              ff.scratch_bytes(ff.p));
        return;
      }
    }
    launch_backward_dq(space, t, br, w);
    launch_backward_dkv(space, t, br, w);
  }
  // The two-kernel scheme's halves: dq (teams own query tiles), dk and dv
  // (teams own key tiles).
  template <class T, class G>
  void launch_backward_dq(const ExecSpace& space, const details::BackwardTensors<T, G>& t, int br,
                          const Window& w) const {
    details::BackwardDQKernel<ExecSpace, T, G> fq{t, branch_params(br, dq_level_, false, w)};
    details::launch_teams(space, "dilated::backward_dq", fq, details::league_size(fq.p),
                          fq.scratch_bytes(fq.p));
  }
  template <class T, class G>
  void launch_backward_dkv(const ExecSpace& space, const details::BackwardTensors<T, G>& t, int br,
                           const Window& w) const {
    details::BackwardDKVKernel<ExecSpace, T, G> fkv{t, branch_params(br, dkv_level_, true, w)};
    details::launch_teams(space, "dilated::backward_dkv", fkv, details::league_size(fkv.p),
                          fkv.scratch_bytes(fkv.p));
  }

  // Run-time checks of a windowed call's tensors: [batch, rows, heads,
  // head_dim] with the window [begin, begin + rows) inside the sequence.
  template <class T>
  void check_window(const char* name, const TensorRef<T, 4>& t, std::int64_t begin,
                    std::int64_t rows) const {
    ProblemShape s = shape_;
    s.seq_len = rows;
    details::check_bshd(name, t, s);
    if (begin < 0 || rows < 1 || begin > shape_.seq_len - rows)
      throw Error("window.range", std::string(name) + " holds positions [" +
                                      std::to_string(begin) + ", " + std::to_string(begin + rows) +
                                      ") outside the plan's sequence [0, " +
                                      std::to_string(shape_.seq_len) + ")");
  }
  void check_branch(int br) const {
    if (params_.pattern.block_sparse.enabled())
      throw Error("window.block_sparse",
                  "windowed calls (sequence parallelism) do not support block-sparse plans; "
                  "call forward/backward on the whole sequence");
    if (br < 0 || br >= params_.pattern.num_branches)
      throw Error("window.branch", "branch " + std::to_string(br) + " is not one of the config's " +
                                       std::to_string(params_.pattern.num_branches) +
                                       " branches");
  }

  // Sized for double (the largest accumulation type) so one answer serves
  // every dtype a call may use.
  static int scratch_level_for(const char* kernel, std::size_t bytes) {
    const int level = details::choose_scratch_level<ExecSpace>(bytes);
    if (level < 0)
      throw Error("backend.scratch", std::string(kernel) + " tiles need " +
                                         std::to_string(bytes) + " bytes of team scratch, more "
                                         "than " + ExecSpace::name() + " offers at any level");
    return level;
  }

  template <class T, class... Vs>
  static constexpr void static_check_io() {
    static_assert(details::is_storage_type<T>(),
                  "dilated::Plan: the portable kernels support float and double tensors, and "
                  "Kokkos half_t / bhalf_t where this Kokkos makes them real 16-bit types");
    static_assert(((details::view_rank<Vs>() == 4) && ...),
                  "dilated::Plan: q, k, v, out and gradients must be rank-4 Views "
                  "[batch, seq, heads, head_dim]");
    static_assert(((std::is_same<typename Vs::non_const_value_type, T>::value) && ...),
                  "dilated::Plan: all tensors of a call must have the same value type");
    static_assert(((details::accessible_from<ExecSpace, Vs>()) && ...),
                  "dilated::Plan: a View's memory space is not accessible from the plan's "
                  "execution space");
  }
  template <class T>
  static constexpr void static_check_window_type() {
    static_assert(!details::is_half_storage<T>::value,
                  "dilated::Plan: windowed calls take float or double tensors (each call "
                  "rewrites its outputs, which 16-bit storage would round once per call)");
  }
  template <class T, class L>
  static constexpr void static_check_lse() {
    static_assert(details::view_rank<L>() == 3, "dilated::Plan: lse must be a rank-3 View "
                                                "[batch, heads, seq]");
    static_assert(std::is_same<typename L::non_const_value_type, details::accum_t<T>>::value,
                  "dilated::Plan: lse must hold the accumulation type (float for float "
                  "and 16-bit tensors, double for double)");
    static_assert(details::accessible_from<ExecSpace, L>(),
                  "dilated::Plan: lse's memory space is not accessible from the plan's "
                  "execution space");
  }

  AttentionConfig config_;
  ProblemShape shape_;
  details::KernelParams params_;
  int forward_level_ = 0, dq_level_ = 0, dkv_level_ = 0, fused_level_ = 0;
  // Forward kernel of Plan<Kokkos::Cuda> for float (DILATED_PORTABLE_GPU_FORWARD).
  details::GpuForwardVariant gpu_forward_ = details::kDefaultGpuForward;
  // Device copy of a block-sparse layout (empty otherwise); params_ points into it.
  details::BlockSparseStorage<typename ExecSpace::memory_space> block_sparse_;
  memory::MemoryResource* workspace_;  // not owned
};

namespace details {
struct PlanTestAccess {
  template <class Plan, class... Args>
  static void backward_two_kernel(const Plan& plan, const Args&... args) {
    plan.backward_impl(typename Plan::execution_space(), args..., true);
  }
  template <class Plan, class... Args>
  static void backward_window_two_kernel(const Plan& plan, const Args&... args) {
    plan.backward_window_impl(true, args...);
  }
};
}  // namespace details

}  // namespace dilated
