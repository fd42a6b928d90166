// dispatch/window_plan.hpp - the windowed calls of one problem (Plan's
// forward_window / backward_window / backward_delta) for whatever tensor
// type a call brings: what dist::SeqParallelPlan computes with.
//
//   * float / double Views: the portable kernels (Plan<ExecSpace>).
//   * Kokkos half_t / bhalf_t Views on Kokkos::Cuda, in a build with
//     cuda_fa3: AutoPlan<ExecSpace, T>, i.e. the cuda_fa3 H100 kernels (the
//     same choice AutoPlan::forward makes; AutoPlan refuses with its reason
//     where cuda_fa3 cannot run the problem).
//
// The 16-bit plan is made at the first 16-bit call, so code that never
// passes 16-bit Views neither references nor links cuda_fa3. A SeqParallelPlan
// call is validated collectively before it computes, and every rank makes
// the same choice (same config, same kind of GPU), so a refusal there is
// raised on every rank alike.
#pragma once

#include <Kokkos_Core.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#include "dilated/plan.hpp"
#include "dispatch/auto_plan.hpp"
#include "memory/kokkos_workspace.hpp"

namespace dilated {

template <class ExecSpace>
class WindowPlan {
 public:
  WindowPlan(AttentionConfig config, ProblemShape shape, memory::MemoryResource* workspace = nullptr)
      : portable_(config, shape, workspace), workspace_(workspace) {}

  const AttentionConfig& config() const { return portable_.config(); }
  const ProblemShape& shape() const { return portable_.shape(); }
  memory::MemoryResource& workspace_resource() const { return portable_.workspace_resource(); }

  // Which backend computes tensors of type T, and why ("portable" for
  // float/double; for 16-bit types AutoPlan's choice, made now if not yet).
  template <class T>
  std::string backend() const {
    if constexpr (kHalf<T>) {
      const auto& p = half_plan<T>();
      return std::string(p.backend_name()) + ": " + p.reason();
    } else {
      return portable_.backend();
    }
  }

  // Empty when windowed calls on T tensors can run here (any branch and
  // window; `backward`: backward_window too), else why not (AutoPlan's
  // window_refusal for 16-bit types). Makes the 16-bit plan if not yet.
  template <class T>
  std::string window_refusal(bool backward) const {
    if constexpr (kHalf<T>)
      return half_plan<T>().window_refusal(backward);
    else
      return (void)backward, std::string();
  }

  template <class Q, class K, class V, class O, class L>
  void forward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                      const O& out, const L& lse, std::int64_t k_begin, const K& k,
                      const V& v) const {
    using T = typename O::non_const_value_type;
    if constexpr (kHalf<T>)
      half_plan<T>().forward_window(space, branch, q_begin, q, out, lse, k_begin, k, v);
    else
      portable_.forward_window(space, branch, q_begin, q, out, lse, k_begin, k, v);
  }

  template <class Q, class K, class V, class DO, class L, class DL, class DQ, class DK, class DV>
  void backward_window(const ExecSpace& space, int branch, std::int64_t q_begin, const Q& q,
                       const DO& dout, const L& lse, const DL& delta, const DQ& dq,
                       std::int64_t k_begin, const K& k, const V& v, const DK& dk,
                       const DV& dv) const {
    using T = typename DQ::non_const_value_type;
    if constexpr (kHalf<T>)
      half_plan<T>().backward_window(space, branch, q_begin, q, dout, lse, delta, dq, k_begin, k,
                                     v, dk, dv);
    else
      portable_.backward_window(space, branch, q_begin, q, dout, lse, delta, dq, k_begin, k, v,
                                dk, dv);
  }

  template <class O, class DO, class DL>
  void backward_delta(const ExecSpace& space, const O& out, const DO& dout, const DL& delta) const {
    using T = typename O::non_const_value_type;
    if constexpr (kHalf<T>)
      half_plan<T>().backward_delta(space, out, dout, delta);
    else
      portable_.backward_delta(space, out, dout, delta);
  }

 private:
  template <class T>
  static constexpr bool kHalf = details::is_half_type<std::remove_cv_t<T>>::value;

  // One lazily made AutoPlan per 16-bit type (thread-safe: calls on one plan
  // may come from several threads, like Plan's).
  template <class T>
  struct HalfSlot {
    std::once_flag once;
    std::unique_ptr<AutoPlan<ExecSpace, T>> plan;
  };
  template <class T>
  const AutoPlan<ExecSpace, T>& half_plan() const {
    HalfSlot<T>& slot = std::get<HalfSlot<T>>(*half_);
    std::call_once(slot.once, [&] {
      slot.plan = std::make_unique<AutoPlan<ExecSpace, T>>(portable_.config(), portable_.shape(),
                                                           workspace_);
    });
    return *slot.plan;
  }

#if DILATED_AUTO_PLAN_HAS_FA3 && KOKKOS_VERSION >= 40000
  using HalfSlots = std::tuple<HalfSlot<Kokkos::Experimental::half_t>,
                               HalfSlot<Kokkos::Experimental::bhalf_t>>;
#elif DILATED_AUTO_PLAN_HAS_FA3
  using HalfSlots = std::tuple<HalfSlot<Kokkos::Experimental::half_t>>;
#else
  using HalfSlots = std::tuple<>;
#endif

  Plan<ExecSpace> portable_;
  memory::MemoryResource* workspace_;  // as given (null: the pool); not owned
  // Shared by copies (a plan is immutable; the slots only cache).
  std::shared_ptr<HalfSlots> half_ = std::make_shared<HalfSlots>();
};

}  // namespace dilated
