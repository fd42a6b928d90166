// dilated/tensor_ref.hpp - the bottom layer: a non-owning pointer + extents +
// strides view of a tensor. The portable kernels and the plain-CUDA backend
// both take these, so neither needs to know about Kokkos View types or layouts
// (LayoutRight, LayoutLeft and LayoutStride all map onto element strides).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dilated/host_device.hpp"

namespace dilated {

enum class DType { Float32, Float64, Float16, BFloat16 };

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::Float32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::Float64;
};

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "unknown";
}

template <class T, int Rank>
struct TensorRef {
  T* data = nullptr;
  std::int64_t extent[Rank] = {};
  std::int64_t stride[Rank] = {};  // in elements

  template <class... I>
  DILATED_INLINE T& operator()(I... idx) const {
    static_assert(sizeof...(I) == Rank, "TensorRef: wrong number of indices");
    const std::int64_t ii[Rank] = {static_cast<std::int64_t>(idx)...};
    std::int64_t off = 0;
    for (int r = 0; r < Rank; ++r) off += ii[r] * stride[r];
    return data[off];
  }
  // Number of elements addressed.
  std::int64_t size() const {
    std::int64_t n = 1;
    for (int r = 0; r < Rank; ++r) n *= extent[r];
    return n;
  }
  // [first, last) byte range the tensor can touch (for aliasing checks).
  void byte_range(std::uintptr_t* first, std::uintptr_t* last) const {
    std::int64_t hi = 0;
    for (int r = 0; r < Rank; ++r) hi += (extent[r] - 1) * stride[r];
    *first = reinterpret_cast<std::uintptr_t>(data);
    *last = *first + static_cast<std::uintptr_t>(hi + 1) * sizeof(T);
  }
  // Adds const (T -> const T). A template so that TensorRef<const T> gets no
  // (never callable) conversion to its own type, which nvcc warns about (#554).
  template <class U = T,
            std::enable_if_t<std::is_same<U, T>::value && !std::is_const<U>::value, int> = 0>
  operator TensorRef<const U, Rank>() const {
    TensorRef<const U, Rank> c;
    c.data = data;
    for (int r = 0; r < Rank; ++r) {
      c.extent[r] = extent[r];
      c.stride[r] = stride[r];
    }
    return c;
  }
};

// The part of `t` with indices [begin, begin + len) along dimension `dim`
// (same strides): a window of positions handed to a windowed kernel call.
template <class T, int Rank>
TensorRef<T, Rank> window_along(const TensorRef<T, Rank>& t, int dim, std::int64_t begin,
                                std::int64_t len) {
  TensorRef<T, Rank> w = t;
  w.data = t.data + begin * t.stride[dim];
  w.extent[dim] = len;
  return w;
}

// Do two tensors share any byte? (Conservative: compares address ranges.)
template <class A, int RA, class B, int RB>
bool overlaps(const TensorRef<A, RA>& a, const TensorRef<B, RB>& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  std::uintptr_t a0, a1, b0, b1;
  a.byte_range(&a0, &a1);
  b.byte_range(&b0, &b1);
  return a0 < b1 && b0 < a1;
}

}  // namespace dilated
