// offload/chunked_plan.hpp - a layer run chunk by chunk with chunk-sized
// portable plans (dilated::Plan) on Kokkos Views: the decomposition of
// chunk_layout.hpp, on any execution space.
//
//   dilated::offload::ChunkedPlan<Kokkos::OpenMP> cp(config, shape, /*chunk_len=*/4096);
//   cp.forward(q, k, v, out, lse);                        // == dilated::Plan(config, shape)
//   cp.backward(q, k, v, out, lse, dout, dq, dk, dv);
//
// Each call runs one chunk plan per chunk on the rows [c, c + len) of every
// tensor (subviews; lse along its last dimension), so a plan's workspace
// (backward's delta, 16-bit float accumulators) is one chunk's, not the
// sequence's. The result equals the un-chunked plan's up to the order of
// floating-point additions inside a chunk, which the chunk plan shares with
// the whole one (unit_tests/test_offload.cpp checks both against the float64
// reference). The CUDA backend's version, with tensors in host memory staged
// through device buffers, is offload/streamed_fa3.hpp.
#pragma once

#include <Kokkos_Core.hpp>
#include <optional>
#include <utility>

#include "dilated/plan.hpp"
#include "offload/chunk_layout.hpp"

namespace dilated {
namespace offload {

template <class ExecSpace = Kokkos::DefaultExecutionSpace>
class ChunkedPlan {
 public:
  using execution_space = ExecSpace;

  // Throws dilated::Error (chunk_layout.hpp's rules, then the chunk plans'
  // own validation) before anything runs.
  ChunkedPlan(const AttentionConfig& config, const ProblemShape& shape, std::int64_t chunk_len,
              memory::MemoryResource* workspace = nullptr)
      : layout_(config, shape, chunk_len), shape_(shape),
        plan_(config, layout_.chunk_shape(layout_.chunk_len()), workspace) {
    if (layout_.tail_len() != layout_.chunk_len())
      tail_.emplace(config, layout_.chunk_shape(layout_.tail_len()), workspace);
  }

  const ChunkLayout& layout() const { return layout_; }
  const ProblemShape& shape() const { return shape_; }
  // The plan of a full chunk (its workspace is what one call needs at most).
  const Plan<ExecSpace>& chunk_plan() const { return plan_; }

  // dilated::Plan::forward's contract on the whole sequence.
  template <class Q, class K, class V, class O, class L>
  void forward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out, const L& lse) const {
    using T = typename O::non_const_value_type;
    check_whole<T>({{"q", details::make_ref(q)}, {"k", details::make_ref(k)}, {"v", details::make_ref(v)}},
                   {{"out", details::make_ref(out)}}, details::make_ref(lse), true);
    // --- nothing above writes; everything below may ---
    for (std::int64_t i = 0; i < layout_.num_chunks(); ++i) {
      const Chunk c = layout_.chunk(i);
      plan_of(c).forward(space, rows(q, c), rows(k, c), rows(v, c), rows(out, c), lse_rows(lse, c));
    }
  }
  template <class Q, class K, class V, class O, class L>
  void forward(const Q& q, const K& k, const V& v, const O& out, const L& lse) const {
    forward(ExecSpace(), q, k, v, out, lse);
  }

  // dilated::Plan::backward's contract on the whole sequence (overwrites dq,
  // dk, dv; fences `space` before returning, like the chunk plans).
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const ExecSpace& space, const Q& q, const K& k, const V& v, const O& out, const L& lse,
                const DO& dout, const DQ& dq, const DK& dk, const DV& dv) const {
    using T = typename DQ::non_const_value_type;
    check_whole<T>({{"q", details::make_ref(q)},
                    {"k", details::make_ref(k)},
                    {"v", details::make_ref(v)},
                    {"out", details::make_ref(out)},
                    {"dout", details::make_ref(dout)}},
                   {{"dq", details::make_ref(dq)}, {"dk", details::make_ref(dk)}, {"dv", details::make_ref(dv)}},
                   details::make_ref(lse), false);
    // --- nothing above writes; everything below may ---
    for (std::int64_t i = 0; i < layout_.num_chunks(); ++i) {
      const Chunk c = layout_.chunk(i);
      plan_of(c).backward(space, rows(q, c), rows(k, c), rows(v, c), rows(out, c), lse_rows(lse, c),
                          rows(dout, c), rows(dq, c), rows(dk, c), rows(dv, c));
    }
  }
  template <class Q, class K, class V, class O, class L, class DO, class DQ, class DK, class DV>
  void backward(const Q& q, const K& k, const V& v, const O& out, const L& lse, const DO& dout, const DQ& dq,
                const DK& dk, const DV& dv) const {
    backward(ExecSpace(), q, k, v, out, lse, dout, dq, dk, dv);
  }

 private:
  template <class V>
  static auto rows(const V& v, const Chunk& c) {
    return Kokkos::subview(v, Kokkos::ALL, std::make_pair(c.begin, c.begin + c.len), Kokkos::ALL, Kokkos::ALL);
  }
  template <class V>
  static auto lse_rows(const V& v, const Chunk& c) {
    return Kokkos::subview(v, Kokkos::ALL, Kokkos::ALL, std::make_pair(c.begin, c.begin + c.len));
  }
  const Plan<ExecSpace>& plan_of(const Chunk& c) const {
    return c.len == layout_.chunk_len() ? plan_ : *tail_;
  }

  // Shapes, and aliasing between whole tensors: the chunk plans check their
  // chunk's views, which would miss an output overlapping another tensor only
  // in a later chunk (after earlier chunks were written).
  template <class T>
  struct Named {
    const char* name;
    TensorRef<const T, 4> ref;
  };
  // Shapes, and aliasing between whole tensors: the chunk plans check their
  // chunk's views, which would miss an output overlapping another tensor only
  // in a later chunk (after earlier chunks were written). Types are checked
  // by the chunk plans' static assertions.
  template <class T, class L>
  void check_whole(std::initializer_list<Named<T>> ins, std::initializer_list<Named<T>> outs, const L& lse,
                   bool lse_is_output) const {
    for (const auto& t : ins) details::check_bshd(t.name, t.ref, shape_);
    for (const auto& t : outs) details::check_bshd(t.name, t.ref, shape_);
    details::check_lse("lse", lse, shape_);
    for (const auto& o : outs) {
      details::check_no_self_overlap(o.name, o.ref);
      for (const auto& t : ins) details::check_no_alias(o.name, o.ref, t.name, t.ref);
      for (const auto& t : outs)
        if (t.name != o.name) details::check_no_alias(o.name, o.ref, t.name, t.ref);
      details::check_no_alias(o.name, o.ref, "lse", lse);
    }
    if (lse_is_output) {
      details::check_no_self_overlap("lse", lse);
      for (const auto& t : ins) details::check_no_alias("lse", lse, t.name, t.ref);
    }
  }

  ChunkLayout layout_;
  ProblemShape shape_;
  Plan<ExecSpace> plan_;
  std::optional<Plan<ExecSpace>> tail_;  // the shorter last chunk, if N % C != 0
};

}  // namespace offload
}  // namespace dilated
