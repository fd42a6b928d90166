// dilated/details/elementwise_kernels.hpp - the small per-row passes around the
// attention kernels: initialising outputs, zeroing gradients, and the backward's
// D = rowsum(dout * out).
#pragma once

#include "dilated/details/kernel_params.hpp"
#include "dilated/tensor_ref.hpp"

namespace dilated {
namespace details {

// Flat range over (batch, seq, heads) rows.
template <class ExecSpace>
Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>> row_policy(
    const ExecSpace& space, std::int64_t rows) {
  return Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, rows);
}

// out = 0 and lse = -inf: the value of a (position, head) that no branch keeps.
template <class ExecSpace, class T>
void init_forward_outputs(const ExecSpace& space, const TensorRef<T, 4>& out,
                          const TensorRef<accum_t<T>, 3>& lse) {
  const std::int64_t N = out.extent[1], H = out.extent[2], D = out.extent[3];
  Kokkos::parallel_for(
      "dilated::init_forward_outputs", row_policy(space, out.extent[0] * N * H),
      KOKKOS_LAMBDA(const std::int64_t r) {
        const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
        for (std::int64_t x = 0; x < D; ++x) out(b, p, h, x) = static_cast<T>(0.0f);
        lse(b, h, p) = -INFINITY;
      });
}

// On a host backend a thread takes whole rows (its inner loop vectorises); on a
// device backend a thread takes one element, so a warp's stores are contiguous
// along head_dim (a row per thread strides them by the row length: the
// gradient zeroing of a 64K-token bf16 backward ran at 95 GB/s that way).
// is_host_space (kernel_params.hpp) asks where the backend runs, not whether
// the host can read its memory (CUDA UVM can be the device's memory space).
//
// f(b, p, h, x) for every element of a [B, N, H, D] tensor.
template <class ExecSpace, class F>
void for_each_element(const ExecSpace& space, const char* name, const std::int64_t (&ext)[4],
                      const F& f) {
  const std::int64_t N = ext[1], H = ext[2], D = ext[3];
  if constexpr (is_host_space<ExecSpace>()) {
    Kokkos::parallel_for(
        name, row_policy(space, ext[0] * N * H), KOKKOS_LAMBDA(const std::int64_t r) {
          const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
          for (std::int64_t x = 0; x < D; ++x) f(b, p, h, x);
        });
  } else {
    Kokkos::parallel_for(
        name, row_policy(space, ext[0] * N * H * D), KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t x = i % D, r = i / D;
          const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
          f(b, p, h, x);
        });
  }
}

template <class ExecSpace, class T>
void zero_tensor(const ExecSpace& space, const TensorRef<T, 4>& g) {
  for_each_element(space, "dilated::zero_gradient", g.extent,
                   KOKKOS_LAMBDA(std::int64_t b, std::int64_t p, std::int64_t h, std::int64_t x) {
                     g(b, p, h, x) = static_cast<T>(0.0f);
                   });
}

// dst = src rounded to dst's type: the one store of a 16-bit output or
// gradient that was accumulated in float (the plan's workspace).
template <class ExecSpace, class S, class T>
void convert_tensor(const ExecSpace& space, const TensorRef<const S, 4>& src,
                    const TensorRef<T, 4>& dst) {
  for_each_element(space, "dilated::round_to_storage", dst.extent,
                   KOKKOS_LAMBDA(std::int64_t b, std::int64_t p, std::int64_t h, std::int64_t x) {
                     dst(b, p, h, x) = static_cast<T>(src(b, p, h, x));
                   });
}

// delta[b, h, p] = sum_x dout * out  (= rowsum(dO_true * O_true), see backward_kernels.hpp)
template <class ExecSpace, class T>
void compute_delta(const ExecSpace& space, const TensorRef<const T, 4>& out,
                   const TensorRef<const T, 4>& dout, const TensorRef<accum_t<T>, 3>& delta) {
  using Acc = accum_t<T>;
  const std::int64_t N = out.extent[1], H = out.extent[2], D = out.extent[3];
  Kokkos::parallel_for(
      "dilated::backward_delta", row_policy(space, out.extent[0] * N * H),
      KOKKOS_LAMBDA(const std::int64_t r) {
        const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
        Acc s = 0;
        for (std::int64_t x = 0; x < D; ++x)
          s += static_cast<Acc>(dout(b, p, h, x)) * static_cast<Acc>(out(b, p, h, x));
        delta(b, h, p) = s;
      });
}

}  // namespace details
}  // namespace dilated
