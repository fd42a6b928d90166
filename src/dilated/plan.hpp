// dilated/plan.hpp - the user-facing object: validate once, then run forward
// and backward on Kokkos Views shaped [batch, seq, heads, head_dim].
//
// Thread safety: a Plan is immutable after construction and its calls keep no
// shared mutable state (no caches, no RNG state: dropout is counter-based), so
// several host threads may call one plan concurrently, each on its own
// execution-space instance. forward() is asynchronous with respect to that
// instance, exactly like Kokkos::parallel_for; fence it before reading
// results. backward() fences its instance before returning, because it frees
// a temporary workspace (until src/memory provides pooled workspaces).
#pragma once

#include <Kokkos_Core.hpp>
#include <string>
#include <type_traits>

#include "dilated/config.hpp"
#include "dilated/cost.hpp"
#include "dilated/details/backward_fused_kernel.hpp"
#include "dilated/details/backward_kernels.hpp"
#include "dilated/details/elementwise_kernels.hpp"
#include "dilated/details/forward_kernel.hpp"
#include "dilated/details/kernel_params.hpp"
#include "dilated/pattern.hpp"
#include "dilated/view_adapter.hpp"

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
  Plan(AttentionConfig config, ProblemShape shape)
      : config_(std::move(config)), shape_(shape) {
    validate(config_, shape_);
    params_.pattern = make_pattern(config_, shape_);
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
    if constexpr (details::is_host_space<ExecSpace>())  // fused backward: host backends only
      fused_level_ = scratch_level_for(
          "backward", details::BackwardFusedKernel<ExecSpace, float>::scratch_bytes(params_) *
                          sizeof(details::accum_t<double>) / sizeof(float));
  }

  const AttentionConfig& config() const { return config_; }
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
    details::init_forward_outputs<ExecSpace, T>(space, outr, lser);
    for (int br = 0; br < params_.pattern.num_branches; ++br) {
      details::ForwardBranchKernel<ExecSpace, T> f{qr, kr, vr, outr, lser,
                                                   branch_params(br, forward_level_, false)};
      details::launch_teams(space, "dilated::forward_branch", f, details::league_size(f.p),
                            f.scratch_bytes(f.p));
    }
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
    Kokkos::View<Acc***, typename ExecSpace::memory_space> delta(
        Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "dilated::backward_delta"),
        shape_.batch, shape_.heads, shape_.seq_len);
    auto delta_ref = details::make_ref(delta);
    t.delta = delta_ref;
    details::compute_delta<ExecSpace, T>(space, outr, t.dout, delta_ref);
    details::zero_tensor<ExecSpace, T>(space, t.dq);
    details::zero_tensor<ExecSpace, T>(space, t.dk);
    details::zero_tensor<ExecSpace, T>(space, t.dv);
    for (int br = 0; br < params_.pattern.num_branches; ++br) {
      if constexpr (details::is_host_space<ExecSpace>()) {
        // One pass per segment: S and dP computed once per tile pair (never
        // instantiated for device spaces, which keep the two-kernel scheme).
        if (!two_kernel) {
          details::KernelParams pf = branch_params(br, fused_level_, true);
          pf.tiles_per_segment = 1;
          details::BackwardFusedKernel<ExecSpace, T> ff{t, pf};
          details::launch_teams(space, "dilated::backward_fused", ff, details::league_size(ff.p),
                                ff.scratch_bytes(ff.p));
          continue;
        }
      }
      {
        details::BackwardDQKernel<ExecSpace, T> fq{t, branch_params(br, dq_level_, false)};
        details::launch_teams(space, "dilated::backward_dq", fq, details::league_size(fq.p),
                              fq.scratch_bytes(fq.p));
        details::BackwardDKVKernel<ExecSpace, T> fkv{t, branch_params(br, dkv_level_, true)};
        details::launch_teams(space, "dilated::backward_dkv", fkv, details::league_size(fkv.p),
                              fkv.scratch_bytes(fkv.p));
      }
    }
    // The workspace is released when `delta` goes out of scope; make sure the
    // kernels that read it have finished.
    space.fence();
  }

  // Launch parameters of one branch. Teams own query tiles, or key tiles
  // (the dk/dv kernel) when `key_tiles`.
  details::KernelParams branch_params(int br, int scratch_level, bool key_tiles) const {
    details::KernelParams p = params_;
    p.branch = br;
    p.scratch_level = scratch_level;
    p.segments = params_.pattern.num_segments(br);
    const std::int64_t tile = key_tiles ? p.tile_k : p.tile_q;
    p.tiles_per_segment = (params_.pattern.max_kept_count(br) + tile - 1) / tile;
    return p;
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
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                  "dilated::Plan: the portable kernels support float and double tensors");
    static_assert(((details::view_rank<Vs>() == 4) && ...),
                  "dilated::Plan: q, k, v, out and gradients must be rank-4 Views "
                  "[batch, seq, heads, head_dim]");
    static_assert(((std::is_same<typename Vs::non_const_value_type, T>::value) && ...),
                  "dilated::Plan: all tensors of a call must have the same value type");
    static_assert(((details::accessible_from<ExecSpace, Vs>()) && ...),
                  "dilated::Plan: a View's memory space is not accessible from the plan's "
                  "execution space");
  }
  template <class T, class L>
  static constexpr void static_check_lse() {
    static_assert(details::view_rank<L>() == 3, "dilated::Plan: lse must be a rank-3 View "
                                                "[batch, heads, seq]");
    static_assert(std::is_same<typename L::non_const_value_type, details::accum_t<T>>::value,
                  "dilated::Plan: lse must hold the accumulation type (float for float "
                  "tensors, double for double)");
    static_assert(details::accessible_from<ExecSpace, L>(),
                  "dilated::Plan: lse's memory space is not accessible from the plan's "
                  "execution space");
  }

  AttentionConfig config_;
  ProblemShape shape_;
  details::KernelParams params_;
  int forward_level_ = 0, dq_level_ = 0, dkv_level_ = 0, fused_level_ = 0;
};

namespace details {
struct PlanTestAccess {
  template <class Plan, class... Args>
  static void backward_two_kernel(const Plan& plan, const Args&... args) {
    plan.backward_impl(typename Plan::execution_space(), args..., true);
  }
};
}  // namespace details

}  // namespace dilated
