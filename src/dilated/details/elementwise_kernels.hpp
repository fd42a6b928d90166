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

template <class ExecSpace, class T>
void zero_tensor(const ExecSpace& space, const TensorRef<T, 4>& g) {
  const std::int64_t N = g.extent[1], H = g.extent[2], D = g.extent[3];
  Kokkos::parallel_for(
      "dilated::zero_gradient", row_policy(space, g.extent[0] * N * H),
      KOKKOS_LAMBDA(const std::int64_t r) {
        const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
        for (std::int64_t x = 0; x < D; ++x) g(b, p, h, x) = static_cast<T>(0.0f);
      });
}

// dst = src rounded to dst's type: the one store of a 16-bit output or
// gradient that was accumulated in float (the plan's workspace).
template <class ExecSpace, class S, class T>
void convert_tensor(const ExecSpace& space, const TensorRef<const S, 4>& src,
                    const TensorRef<T, 4>& dst) {
  const std::int64_t N = dst.extent[1], H = dst.extent[2], D = dst.extent[3];
  Kokkos::parallel_for(
      "dilated::round_to_storage", row_policy(space, dst.extent[0] * N * H),
      KOKKOS_LAMBDA(const std::int64_t r) {
        const std::int64_t h = r % H, p = (r / H) % N, b = r / (H * N);
        for (std::int64_t x = 0; x < D; ++x) dst(b, p, h, x) = static_cast<T>(src(b, p, h, x));
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
