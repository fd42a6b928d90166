// cuda_fa3/details/backward_launch.cu - see backward_launch.cuh.
#include "cuda_fa3/details/backward_launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <mutex>
#include <string>

#include "cuda_fa3/details/backward_kernel.cuh"
#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error("cuda.runtime", std::string("cuda_fa3: ") + what + ": " + cudaGetErrorString(e));
}

template <class T>
__device__ float to_float(T x) {
  return float(x);
}

// One warp per (b, s, h) row: delta = sum_d dO * O, in fp32.
template <class T>
__global__ void delta_kernel(Tensor dout, Tensor out, LseTensor delta, std::int64_t batch, std::int64_t seq,
                             std::int64_t heads, std::int64_t dim) {
  const std::int64_t row = (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= batch * seq * heads) return;
  const std::int64_t h = row % heads, s = (row / heads) % seq, b = row / (heads * seq);
  const T* d = static_cast<const T*>(dout.data) + b * dout.stride_b + s * dout.stride_s + h * dout.stride_h;
  const T* o = static_cast<const T*>(out.data) + b * out.stride_b + s * out.stride_s + h * out.stride_h;
  float acc = 0.f;
  for (std::int64_t x = lane; x < dim; x += 32) acc += to_float(d[x]) * to_float(o[x]);
#pragma unroll
  for (int m = 16; m > 0; m /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, m);
  if (lane == 0) delta.data[b * delta.stride_b + h * delta.stride_h + s * delta.stride_s] = acc;
}

// add: dst += src (windowed calls add into the caller's gradients). One
// thread per 8 consecutive elements of a row (head_dim is a multiple of 64):
// two 16-byte fp32 loads, one 16-byte 16-bit load/store, and the row's index
// arithmetic once per 8 elements (per element, its 64-bit divisions cost more
// than the memory traffic). Rounds to nearest, like T(float).
template <class T>
__global__ void store_kernel(const float* src, MutableTensor dst, std::int64_t batch, std::int64_t seq,
                             std::int64_t heads, std::int64_t dim, bool add) {
  using P2 = Pack2<T>;
  const std::int64_t chunks = dim / 8, n = batch * seq * heads * chunks;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / chunks, x = (i - row * chunks) * 8;
    const std::int64_t h = row % heads, s = (row / heads) % seq, b = row / (heads * seq);
    const float4* in = reinterpret_cast<const float4*>(src + row * dim + x);
    const float4 lo = in[0], hi = in[1];
    float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    uint4* out = reinterpret_cast<uint4*>(static_cast<T*>(dst.data) + b * dst.stride_b + s * dst.stride_s +
                                          h * dst.stride_h + x);
    if (add) {
      const uint4 prev = *out;
      const auto* p = reinterpret_cast<const typename P2::type*>(&prev);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = P2::unpack(p[k]);
        v[2 * k] += f.x;
        v[2 * k + 1] += f.y;
      }
    }
    uint4 r;
    auto* q = reinterpret_cast<typename P2::type*>(&r);
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = P2::make(v[2 * k], v[2 * k + 1]);
    *out = r;
  }
}
}  // namespace

template <class T>
void launch_delta(const Tensor& dout, const Tensor& out, const LseTensor& delta, std::int64_t batch,
                  std::int64_t seq, std::int64_t heads, std::int64_t dim, cudaStream_t stream) {
  const std::int64_t rows = batch * seq * heads;
  delta_kernel<T><<<unsigned((rows * 32 + 255) / 256), 256, 0, stream>>>(dout, out, delta, batch, seq, heads, dim);
  check(cudaGetLastError(), "delta kernel launch");
}

template <class T, int HeadDim>
void launch_backward_branch(const BackwardArgs& args, std::int64_t tiles, cudaStream_t stream) {
  using Shape = BackwardShape<HeadDim>;
  auto* plain = &backward_kernel<T, HeadDim, false, false>;
  auto* dropout = &backward_kernel<T, HeadDim, true, false>;
  auto* sparse = &backward_kernel<T, HeadDim, false, true>;  // block-sparse, no dropout (plan.cu)
  static std::once_flag once;
  std::call_once(once, [&] {
    for (auto* k : {plain, dropout, sparse})
      check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::kSmemBytes),
            "cudaFuncSetAttribute");
  });
  const bool block_sparse = args.p.pattern.block_sparse.enabled();
  if (block_sparse && args.p.dropout.enabled())
    throw Error("cuda.unsupported", "cuda_fa3: block-sparse backward runs without dropout");
  auto* kernel = block_sparse ? sparse : args.p.dropout.enabled() ? dropout : plain;
  const dim3 grid(unsigned(tiles), HeadDim / Shape::kOutCols);
  kernel<<<grid, dim3(Shape::kThreads), Shape::kSmemBytes, stream>>>(args);
  check(cudaGetLastError(), "backward kernel launch");
}

template <class T>
void launch_store_gradient(const float* src, const MutableTensor& dst, std::int64_t batch, std::int64_t seq,
                           std::int64_t heads, std::int64_t dim, cudaStream_t stream, bool add) {
  store_kernel<T><<<8192, 256, 0, stream>>>(src, dst, batch, seq, heads, dim, add);
  check(cudaGetLastError(), "gradient store launch");
}

#define DILATED_FA3_BWD(T)                                                                               \
  template void launch_delta<T>(const Tensor&, const Tensor&, const LseTensor&, std::int64_t,            \
                                std::int64_t, std::int64_t, std::int64_t, cudaStream_t);                 \
  template void launch_backward_branch<T, 64>(const BackwardArgs&, std::int64_t, cudaStream_t);          \
  template void launch_backward_branch<T, 128>(const BackwardArgs&, std::int64_t, cudaStream_t);         \
  template void launch_backward_branch<T, 256>(const BackwardArgs&, std::int64_t, cudaStream_t);         \
  template void launch_store_gradient<T>(const float*, const MutableTensor&, std::int64_t, std::int64_t, \
                                         std::int64_t, std::int64_t, cudaStream_t, bool);
DILATED_FA3_BWD(__nv_bfloat16)
DILATED_FA3_BWD(__half)
#undef DILATED_FA3_BWD

}  // namespace dilated::cuda_fa3::details
