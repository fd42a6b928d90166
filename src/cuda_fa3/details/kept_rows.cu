// cuda_fa3/details/kept_rows.cu - see kept_rows.cuh.
#include "cuda_fa3/details/kept_rows.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error("cuda.runtime", std::string("cuda_fa3: ") + what + ": " + cudaGetErrorString(e));
}

// The kept rows of a window, enumerated as (batch, head, segment, sparse
// index) slots of max_kept each; a slot past its segment's kept range, or of
// a head that does not run the branch, is -1.
struct KeptWindow {
  PatternParams pat;
  int branch;
  std::int64_t begin, rows, first_seg, num_seg, max_kept, heads;

  __device__ std::int64_t row(std::int64_t r, std::int64_t* b, std::int64_t* h) const {
    const std::int64_t j = r % max_kept;
    r /= max_kept;
    const std::int64_t s = first_seg + r % num_seg;
    r /= num_seg;
    *h = r % heads;
    *b = r / heads;
    if (!pat.active(*h, branch)) return -1;
    const std::int64_t o = pat.offset(*h, branch);
    std::int64_t j0, j1;
    pat.window_range(branch, s, o, begin, begin + rows, &j0, &j1);
    if (j >= j1 - j0) return -1;
    return pat.position(branch, s, o, j0 + j) - begin;
  }
  __host__ __device__ std::int64_t slots(std::int64_t batch) const { return batch * heads * num_seg * max_kept; }
};

KeptWindow make_window(const PatternParams& pat, int i, std::int64_t begin, std::int64_t rows,
                       std::int64_t heads) {
  const std::int64_t seg = pat.segment_length[i];
  KeptWindow w{pat, i, begin, rows, begin / seg, (begin + rows - 1) / seg - begin / seg + 1,
               pat.max_kept_in_window(i, rows), heads};
  return w;
}

// One thread per (slot, 8 elements of the row).
__global__ void zero_kept_kernel(float* acc, KeptWindow w, std::int64_t batch, std::int64_t dim) {
  const std::int64_t chunks = dim / 8, n = w.slots(batch) * chunks;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t slot = i / chunks, x = (i - slot * chunks) * 8;
    std::int64_t b, h;
    const std::int64_t row = w.row(slot, &b, &h);
    if (row < 0) continue;
    float4* p = reinterpret_cast<float4*>(acc + ((b * w.rows + row) * w.heads + h) * dim + x);
    p[0] = make_float4(0.f, 0.f, 0.f, 0.f);
    p[1] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

template <class T>
__global__ void add_kept_kernel(const float* acc, MutableTensor dst, KeptWindow w, std::int64_t batch,
                                std::int64_t dim) {
  const std::int64_t chunks = dim / 8, n = w.slots(batch) * chunks;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t slot = i / chunks, x = (i - slot * chunks) * 8;
    std::int64_t b, h;
    const std::int64_t row = w.row(slot, &b, &h);
    if (row < 0) continue;
    const float4* in = reinterpret_cast<const float4*>(acc + ((b * w.rows + row) * w.heads + h) * dim + x);
    const float4 lo = in[0], hi = in[1];
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    T* out = static_cast<T*>(dst.data) + b * dst.stride_b + row * dst.stride_s + h * dst.stride_h + x;
    uint4 prev = *reinterpret_cast<const uint4*>(out);
    T* e = reinterpret_cast<T*>(&prev);
#pragma unroll
    for (int k = 0; k < 8; ++k) e[k] = T(v[k] + float(e[k]));
    *reinterpret_cast<uint4*>(out) = prev;
  }
}

unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + 255) / 256;
  return unsigned(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}
}  // namespace

bool kept_rows_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DILATED_FA3_WINDOW_ACC");
    return !(e && std::strcmp(e, "whole") == 0);
  }();
  return on;
}

void launch_zero_kept(float* acc, const PatternParams& pat, int i, std::int64_t begin, std::int64_t batch,
                      std::int64_t rows, std::int64_t heads, std::int64_t dim, cudaStream_t stream) {
  const KeptWindow w = make_window(pat, i, begin, rows, heads);
  zero_kept_kernel<<<grid_for(w.slots(batch) * (dim / 8)), 256, 0, stream>>>(acc, w, batch, dim);
  check(cudaGetLastError(), "zero_kept launch");
}

template <class T>
void launch_add_kept(const float* acc, const MutableTensor& dst, const PatternParams& pat, int i,
                     std::int64_t begin, std::int64_t batch, std::int64_t rows, std::int64_t heads,
                     std::int64_t dim, cudaStream_t stream) {
  const KeptWindow w = make_window(pat, i, begin, rows, heads);
  add_kept_kernel<T><<<grid_for(w.slots(batch) * (dim / 8)), 256, 0, stream>>>(acc, dst, w, batch, dim);
  check(cudaGetLastError(), "add_kept launch");
}

template void launch_add_kept<__nv_bfloat16>(const float*, const MutableTensor&, const PatternParams&, int,
                                             std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                             std::int64_t, cudaStream_t);
template void launch_add_kept<__half>(const float*, const MutableTensor&, const PatternParams&, int, std::int64_t,
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t, cudaStream_t);

}  // namespace dilated::cuda_fa3::details
