// cuda_fa3/details/backward_launch.cuh - the backward's launches: delta =
// rowsum(dO * O), one kernel per branch, and the final fp32 -> 16-bit copy.
#pragma once

#include <cuda_runtime.h>

#include "cuda_fa3/details/backward_params.hpp"
#include "cuda_fa3/fa3.hpp"

namespace dilated::cuda_fa3::details {

// delta[b, h, s] (fp32, any strides) = rowsum(dout * out).
template <class T>
void launch_delta(const Tensor& dout, const Tensor& out, const LseTensor& delta, std::int64_t batch,
                  std::int64_t seq, std::int64_t heads, std::int64_t dim, cudaStream_t stream);

template <class T, int HeadDim>
void launch_backward_branch(const BackwardArgs& args, std::int64_t tiles, cudaStream_t stream);

// dst (16-bit, user strides) = src (dense fp32 [b, s, h, d]); add: dst += src.
template <class T>
void launch_store_gradient(const float* src, const MutableTensor& dst, std::int64_t batch,
                           std::int64_t seq, std::int64_t heads, std::int64_t dim, cudaStream_t stream,
                           bool add = false);

}  // namespace dilated::cuda_fa3::details
