// dispatch/auto_plan.hpp - one plan for every backend: picks the cuda_fa3
// H100 kernels when they can run the problem, the portable Kokkos kernels
// otherwise, and says which it picked and why.
//
//   dilated::AutoPlan<Kokkos::Cuda, Kokkos::Experimental::bhalf_t> plan(config, shape);
//   std::cout << plan.backend_name() << ": " << plan.reason() << "\n";
//   plan.forward(q, k, v, out, lse);   // Views [batch, seq, heads, head_dim]
//
// The choice is made at run time (the device's compute capability, the head
// dim, dropout, ...) among the backends this build and this Kokkos contain:
//   * T = float/double: the portable kernels (cuda_fa3 runs 16-bit tensors).
//   * T = Kokkos half_t/bhalf_t: cuda_fa3 on Kokkos::Cuda when it supports the
//     problem on this device; otherwise the portable kernels (16-bit storage,
//     float accumulation) wherever this Kokkos makes the type a real 16-bit
//     type (details/storage_types.hpp: CUDA builds, device and host spaces),
//     with cuda_fa3's reason in reason(); otherwise the constructor throws
//     dilated::Error.
// This header sits above both kernel families; neither includes it.
#pragma once

#include <Kokkos_Core.hpp>
#include <memory>
#include <string>
#include <type_traits>

#include "dilated/dilated_config.hpp"
#include "dilated/error.hpp"
#include "dilated/plan.hpp"
#include "dilated/view_adapter.hpp"
#include "memory/kokkos_workspace.hpp"

#if DILATED_ENABLE_CUDA && defined(KOKKOS_ENABLE_CUDA)
#include "cuda_fa3/fa3.hpp"
#define DILATED_AUTO_PLAN_HAS_FA3 1
#else
#define DILATED_AUTO_PLAN_HAS_FA3 0
#endif

namespace dilated {

enum class Backend { portable, cuda_fa3 };

inline const char* to_string(Backend b) { return b == Backend::portable ? "portable" : "cuda_fa3"; }

namespace details {

template <class T>
struct is_half_type : std::false_type {};
#if DILATED_AUTO_PLAN_HAS_FA3
template <>
struct is_half_type<Kokkos::Experimental::half_t> : std::true_type {};
#if KOKKOS_VERSION >= 40000
template <>
struct is_half_type<Kokkos::Experimental::bhalf_t> : std::true_type {};
#endif
#endif

}  // namespace details

template <class ExecSpace, class T>
class AutoPlan {
  // kPortable16: the portable kernels store T (a real 16-bit type here).
  static constexpr bool kPortable16 = details::is_half_storage<std::remove_cv_t<T>>::value;
  static constexpr bool kHalf = details::is_half_type<std::remove_cv_t<T>>::value || kPortable16;
#if DILATED_AUTO_PLAN_HAS_FA3
  // kFa3: cuda_fa3 may run this (half_t / bhalf_t on Kokkos::Cuda).
  static constexpr bool kFa3 = details::is_half_type<std::remove_cv_t<T>>::value &&
                               std::is_same<ExecSpace, Kokkos::Cuda>::value;
#endif
  static_assert(kHalf || std::is_same<T, float>::value || std::is_same<T, double>::value,
                "AutoPlan: T must be float, double, or half_t / bhalf_t (cuda_fa3 on Kokkos::Cuda, "
                "or the portable kernels where Kokkos makes them real 16-bit types)");

 public:
  // `workspace`: as for Plan (where temporaries come from; null: the
  // process-wide pool of ExecSpace's memory space).
  AutoPlan(AttentionConfig config, ProblemShape shape, memory::MemoryResource* workspace = nullptr)
      : config_(std::move(config)), shape_(shape),
        workspace_(workspace ? workspace
                             : &memory::workspace_stack<typename ExecSpace::memory_space>()
                                    .resource()) {
    validate(config_, shape_);
    if constexpr (kHalf) {
      std::string fa3_reason = "cuda_fa3 runs on Kokkos::Cuda only";
#if DILATED_AUTO_PLAN_HAS_FA3
      if constexpr (kFa3) {
        fa3_ = std::make_unique<cuda_fa3::Plan>(config_, shape_, dtype());
        if (fa3_->support().ok) {
          backend_ = Backend::cuda_fa3;
          reason_ = fa3_->support().reason;
          return;
        }
        fa3_reason = fa3_->support().reason;
        fa3_.reset();
      }
#elif DILATED_ENABLE_CUDA
      fa3_reason = "this Kokkos has no CUDA backend for cuda_fa3";
#else
      fa3_reason = "built without cuda_fa3 (DILATED_ENABLE_CUDA=OFF)";
#endif
      if constexpr (kPortable16) {
        portable_ = std::make_unique<Plan<ExecSpace>>(config_, shape_, workspace_);
        backend_ = Backend::portable;
        reason_ = "portable Kokkos kernels (16-bit storage, float accumulation): " + fa3_reason;
      } else {
        throw Error("dispatch.no_backend",
                    "no backend runs this problem with 16-bit tensors: " + fa3_reason +
                        "; the portable kernels take 16-bit tensors only where Kokkos makes "
                        "half_t/bhalf_t real types");
      }
    } else {
      portable_ = std::make_unique<Plan<ExecSpace>>(config_, shape_, workspace_);
      backend_ = Backend::portable;
#if DILATED_AUTO_PLAN_HAS_FA3
      reason_ = std::is_same<ExecSpace, Kokkos::Cuda>::value
                    ? "portable Kokkos kernels: cuda_fa3 runs bf16/fp16 tensors, these are " +
                          std::string(std::is_same<T, float>::value ? "float" : "double")
                    : "portable Kokkos kernels: cuda_fa3 runs on Kokkos::Cuda only";
#elif DILATED_ENABLE_CUDA
      reason_ = "portable Kokkos kernels: this Kokkos has no CUDA backend for cuda_fa3";
#else
      reason_ = "portable Kokkos kernels: built without cuda_fa3 (DILATED_ENABLE_CUDA=OFF)";
#endif
    }
  }

  Backend backend() const { return backend_; }
  const char* backend_name() const { return to_string(backend_); }
  // Why this backend runs (and, for the portable path, why cuda_fa3 does not).
  const std::string& reason() const { return reason_; }
  const AttentionConfig& config() const { return config_; }
  const ProblemShape& shape() const { return shape_; }
  memory::MemoryResource& workspace_resource() const { return *workspace_; }

  template <class Q, class K, class V, class O, class L>
  void forward(const Q& q, const K& k, const V& v, const O& out, const L& lse) const {
#if DILATED_AUTO_PLAN_HAS_FA3
    if constexpr (kFa3) {
      if (fa3_) {
        check_views(q, k, v, out, lse);
        fa3_->forward(tensor(q), tensor(k), tensor(v), mutable_tensor(out), lse_tensor(lse), stream());
        return;
      }
    }
#endif
    if constexpr (!kHalf || kPortable16) portable_->forward(q, k, v, out, lse);
  }

  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const Q& q, const K& k, const V& v, const O& out, const L& lse, const DO& dout,
                const DQ& dq, const DK& dk, const DV& dv) const {
#if DILATED_AUTO_PLAN_HAS_FA3
    if constexpr (kFa3) {
      if (fa3_) {
        check_views(q, k, v, out, lse);
        check_views(dout, dq, dk, dv, lse);
        fa3_->backward(tensor(q), tensor(k), tensor(v), tensor(out), lse_tensor(lse), tensor(dout),
                       mutable_tensor(dq), mutable_tensor(dk), mutable_tensor(dv), stream());
        return;
      }
    }
#endif
    if constexpr (!kHalf || kPortable16) portable_->backward(q, k, v, out, lse, dout, dq, dk, dv);
  }

  // --- Windowed calls (sequence parallelism), Plan's semantics ------------
  // One branch: q, out, lse hold positions [q_begin, q_begin + q.extent(1)),
  // k, v hold [k_begin, k_begin + k.extent(1)); the pair's attention is
  // merged into (out, lse) by log-sum-exp. Asynchronous on `space`. This is
  // what dist::SeqParallelPlan computes 16-bit Views with (through
  // dispatch/window_plan.hpp), so a sharded layer of bf16/fp16 runs cuda_fa3.
  template <class Q, class K, class V, class O, class L>
  void forward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                      const O& out, const L& lse, std::int64_t k_begin, const K& k,
                      const V& v) const {
#if DILATED_AUTO_PLAN_HAS_FA3
    if constexpr (kHalf && std::is_same<ExecSpace, Kokkos::Cuda>::value) {
      if (fa3_) {
        check_window_views(q, out, lse, k, v);
        fa3_->forward_window(branch, q_begin, std::int64_t(q.extent(1)), tensor(q), mutable_tensor(out),
                             lse_tensor(lse), k_begin, std::int64_t(k.extent(1)), tensor(k), tensor(v),
                             space.cuda_stream());
        return;
      }
    }
#endif
    if constexpr (!kHalf) portable_->forward_window(space, branch, q_begin, q, out, lse, k_begin, k, v);
    else no_16bit_windows();
  }

  // delta = rowsum(dout * out) of a query window ([batch, heads, rows], float).
  template <class O, class DO, class DL>
  void backward_delta(const ExecSpace& space, const O& out, const DO& dout, const DL& delta) const {
#if DILATED_AUTO_PLAN_HAS_FA3
    if constexpr (kHalf && std::is_same<ExecSpace, Kokkos::Cuda>::value) {
      if (fa3_) {
        ProblemShape ws = shape_;
        ws.seq_len = std::int64_t(out.extent(1));
        details::check_bshd("out", details::make_ref(out), ws);
        details::check_bshd("dout", details::make_ref(dout), ws);
        details::check_lse("delta", details::make_ref(delta), ws);
        fa3_->backward_delta(tensor(out), tensor(dout), ws.seq_len, lse_tensor(delta), space.cuda_stream());
        return;
      }
    }
#endif
    if constexpr (!kHalf) portable_->backward_delta(space, out, dout, delta);
    else no_16bit_windows();
  }

  // Adds the window pair's share of the gradient into dq, dk, dv (Plan's
  // backward_window; cuda_fa3 runs its v1 kernel for windows).
  template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV>
  void backward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                       const DO& dout, const L& lse, const DL& delta, const DQ& dq,
                       std::int64_t k_begin, const K& k, const V& v, const DK& dk,
                       const DV& dv) const {
#if DILATED_AUTO_PLAN_HAS_FA3
    if constexpr (kHalf && std::is_same<ExecSpace, Kokkos::Cuda>::value) {
      if (fa3_) {
        check_window_views(q, dq, lse, k, v);
        check_window_views(dout, dq, delta, dk, dv);
        fa3_->backward_window(branch, q_begin, std::int64_t(q.extent(1)), tensor(q), tensor(dout),
                              lse_tensor(lse), lse_tensor(delta), mutable_tensor(dq), k_begin,
                              std::int64_t(k.extent(1)), tensor(k), tensor(v), mutable_tensor(dk),
                              mutable_tensor(dv), space.cuda_stream());
        return;
      }
    }
#endif
    if constexpr (!kHalf)
      portable_->backward_window(space, branch, q_begin, q, dout, lse, delta, dq, k_begin, k, v, dk,
                                 dv);
    else no_16bit_windows();
  }

 // Empty when the windowed calls above can run (any branch, any window
  // inside the sequence; `backward`: backward_window too), else why not:
  // 16-bit windows run on cuda_fa3 only, and only where its window_support()
  // allows. Never throws (src/dist asks it in its collective check).
  std::string window_refusal(bool backward) const {
    if constexpr (!kHalf) {
      (void)backward;
      return {};
    } else {
#if DILATED_AUTO_PLAN_HAS_FA3
      if (fa3_) {
        const cuda_fa3::Support s = fa3_->window_support(backward);
        return s.ok ? std::string() : "cuda_fa3: " + s.reason;
      }
#endif
      (void)backward;
      return "windowed calls with 16-bit tensors run on cuda_fa3 only, which does not run here: " +
             reason_;
    }
  }

 private:
  // The portable kernels' windowed calls take float/double only (Plan).
  [[noreturn]] void no_16bit_windows() const {
    throw Error("dispatch.no_backend",
                "windowed calls with 16-bit tensors run on cuda_fa3 only, which does not run "
                "here: " + reason_);
  }
#if DILATED_AUTO_PLAN_HAS_FA3
  static cuda_fa3::DType dtype() {
    return std::is_same<std::remove_cv_t<T>, Kokkos::Experimental::half_t>::value ? cuda_fa3::DType::fp16
                                                                                  : cuda_fa3::DType::bf16;
  }
  static cudaStream_t stream() { return Kokkos::Cuda().cuda_stream(); }
  template <class View>
  static cuda_fa3::Tensor tensor(const View& v) {
    return {v.data(), std::int64_t(v.stride(0)), std::int64_t(v.stride(1)), std::int64_t(v.stride(2)),
            std::int64_t(v.stride(3))};
  }
  template <class View>
  static cuda_fa3::MutableTensor mutable_tensor(const View& v) {
    static_assert(!std::is_const<typename View::value_type>::value, "outputs must be writable Views");
    return {v.data(), std::int64_t(v.stride(0)), std::int64_t(v.stride(1)), std::int64_t(v.stride(2)),
            std::int64_t(v.stride(3))};
  }
  template <class View>
  static cuda_fa3::LseTensor lse_tensor(const View& v) {
    static_assert(std::is_same<typename View::value_type, float>::value, "lse must be a float View");
    return {v.data(), std::int64_t(v.stride(0)), std::int64_t(v.stride(1)), std::int64_t(v.stride(2))};
  }
  template <class A, class B, class C, class D, class L>
  void check_views(const A& a, const B& b, const C& c, const D& d, const L& lse) const {
    static_assert(details::view_rank<A>() == 4 && details::view_rank<B>() == 4 && details::view_rank<C>() == 4 &&
                      details::view_rank<D>() == 4 && details::view_rank<L>() == 3,
                  "tensors must be rank-4 Views and lse a rank-3 View");
    static_assert(Kokkos::SpaceAccessibility<Kokkos::Cuda, typename A::memory_space>::accessible,
                  "cuda_fa3 needs Views the CUDA device can read");
    details::check_bshd("tensor", details::make_ref(a), shape_);
    details::check_bshd("tensor", details::make_ref(b), shape_);
    details::check_bshd("tensor", details::make_ref(c), shape_);
    details::check_bshd("tensor", details::make_ref(d), shape_);
    details::check_lse("lse", details::make_ref(lse), shape_);
  }
  // A windowed call's Views: [batch, rows, heads, head_dim] with the plan's
  // batch, heads and head_dim; lse [batch, heads, query rows]. The window
  // ranges themselves are cuda_fa3's to check.
  template <class Q, class O, class L, class K, class V>
  void check_window_views(const Q& q, const O& out, const L& lse, const K& k, const V& v) const {
    static_assert(details::view_rank<Q>() == 4 && details::view_rank<O>() == 4 && details::view_rank<K>() == 4 &&
                      details::view_rank<V>() == 4 && details::view_rank<L>() == 3,
                  "tensors must be rank-4 Views and lse a rank-3 View");
    ProblemShape qs = shape_, ks = shape_;
    qs.seq_len = std::int64_t(q.extent(1));
    ks.seq_len = std::int64_t(k.extent(1));
    details::check_bshd("q", details::make_ref(q), qs);
    details::check_bshd("out", details::make_ref(out), qs);
    details::check_lse("lse", details::make_ref(lse), qs);
    details::check_bshd("k", details::make_ref(k), ks);
    details::check_bshd("v", details::make_ref(v), ks);
  }
  std::unique_ptr<cuda_fa3::Plan> fa3_;
#endif
  AttentionConfig config_;
  ProblemShape shape_;
  Backend backend_ = Backend::portable;
  std::string reason_;
  memory::MemoryResource* workspace_;  // not owned
  std::unique_ptr<Plan<ExecSpace>> portable_;
};

}  // namespace dilated
