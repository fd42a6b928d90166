// dilated/view_adapter.hpp - Kokkos View -> TensorRef, and the compile-time
// and run-time checks on the Views a plan is called with.
#pragma once

#include <Kokkos_Core.hpp>
#include <string>
#include <type_traits>

#include "dilated/config.hpp"
#include "dilated/error.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

// Rank from the View's data type (float****, float*[4], ...): portable across
// Kokkos 3.x/4.x/5.x, whose View::rank spellings differ.
template <class D>
struct data_rank : std::integral_constant<int, 0> {};
template <class D>
struct data_rank<D*> : std::integral_constant<int, 1 + data_rank<D>::value> {};
template <class D>
struct data_rank<D[]> : std::integral_constant<int, 1 + data_rank<D>::value> {};
template <class D, std::size_t N>
struct data_rank<D[N]> : std::integral_constant<int, 1 + data_rank<D>::value> {};
template <class V>
constexpr int view_rank() {
  return data_rank<typename V::data_type>::value;
}

template <class V>
TensorRef<typename V::value_type, view_rank<V>()> make_ref(const V& v) {
  constexpr int R = view_rank<V>();
  static_assert(R >= 1, "make_ref: rank-0 Views are not tensors");
  TensorRef<typename V::value_type, R> r;
  r.data = v.data();
  for (std::size_t i = 0; i < static_cast<std::size_t>(R); ++i) {
    r.extent[i] = static_cast<std::int64_t>(v.extent(i));
    r.stride[i] = static_cast<std::int64_t>(v.stride(i));
  }
  return r;
}

template <class ExecSpace, class V>
constexpr bool accessible_from() {
  return Kokkos::SpaceAccessibility<ExecSpace, typename V::memory_space>::accessible;
}

// A [batch, seq, heads, head_dim] tensor matches the plan's shape and is allocated.
template <class T>
void check_bshd(const char* name, const TensorRef<T, 4>& t, const ProblemShape& s) {
  const std::int64_t want[4] = {s.batch, s.seq_len, s.heads, s.head_dim};
  const char* dims[4] = {"batch", "seq_len", "heads", "head_dim"};
  for (int i = 0; i < 4; ++i)
    if (t.extent[i] != want[i])
      throw Error("view.shape", std::string(name) + ".extent(" + std::to_string(i) + ") = " +
                                    std::to_string(t.extent[i]) + " but the plan's " + dims[i] +
                                    " is " + std::to_string(want[i]) +
                                    " (tensors are [batch, seq, heads, head_dim])");
  if (t.data == nullptr)
    throw Error("view.allocated", std::string(name) + " has no data (unallocated View)");
}

// lse is [batch, heads, seq].
template <class T>
void check_lse(const char* name, const TensorRef<T, 3>& t, const ProblemShape& s) {
  const std::int64_t want[3] = {s.batch, s.heads, s.seq_len};
  const char* dims[3] = {"batch", "heads", "seq_len"};
  for (int i = 0; i < 3; ++i)
    if (t.extent[i] != want[i])
      throw Error("view.shape", std::string(name) + ".extent(" + std::to_string(i) + ") = " +
                                    std::to_string(t.extent[i]) + " but the plan's " + dims[i] +
                                    " is " + std::to_string(want[i]) +
                                    " (lse is [batch, heads, seq])");
  if (t.data == nullptr)
    throw Error("view.allocated", std::string(name) + " has no data (unallocated View)");
}

// An output's own elements must not share memory (e.g. a LayoutStride View
// with a zero or too-small stride), or kernels writing it would race.
template <class T, int R>
void check_no_self_overlap(const char* name, const TensorRef<T, R>& t) {
  int order[R];
  for (int i = 0; i < R; ++i) order[i] = i;
  // Insertion sort of the dimensions by stride.
  for (int i = 1; i < R; ++i)
    for (int j = i; j > 0 && t.stride[order[j]] < t.stride[order[j - 1]]; --j) {
      const int tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  std::int64_t span = 1;  // elements covered by the dimensions seen so far
  for (int i = 0; i < R; ++i) {
    const int d = order[i];
    if (t.extent[d] <= 1) continue;
    if (t.stride[d] < span)
      throw Error("view.self_overlap",
                  std::string("output ") + name + " has stride " + std::to_string(t.stride[d]) +
                      " in dimension " + std::to_string(d) +
                      ", so distinct elements share memory; outputs need non-overlapping strides");
    span = t.stride[d] * t.extent[d];
  }
}

// An output must not share memory with any other tensor of the call.
template <class A, int RA, class B, int RB>
void check_no_alias(const char* out_name, const TensorRef<A, RA>& out, const char* other_name,
                    const TensorRef<B, RB>& other) {
  if (overlaps(out, other))
    throw Error("view.aliasing", std::string("output ") + out_name + " overlaps " + other_name +
                                     " in memory; outputs must not alias any other argument");
}

}  // namespace details
}  // namespace dilated
