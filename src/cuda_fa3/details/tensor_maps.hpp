// cuda_fa3/details/tensor_maps.hpp - TMA descriptors for a [b, s, h, d] tensor
// viewed through a branch's dilation: rows phase, phase + r, phase + 2r, ...
#pragma once

#include <cuda.h>
#include <cstdint>

#include "cuda_fa3/fa3.hpp"

namespace dilated::cuda_fa3::details {

// Encodes a 4-D map {d, sparse row, head, batch} with a box of 64 x box_rows
// and 128-byte swizzle; throws dilated::Error if the driver rejects it.
void encode_dilated_map(CUtensorMap* map, DType dtype, const void* data, const Tensor& strides,
                        std::int64_t batch, std::int64_t seq_len, std::int64_t heads,
                        std::int64_t head_dim, std::int64_t dilation, std::int64_t phase,
                        int box_rows);

// The same view of a dense fp32 [batch, seq, heads, head_dim] accumulator
// (strides implied), with a box of 32 floats (128 bytes) x box_rows and
// 128-byte swizzle: the target of the backward's dQ reduce-add.
void encode_dilated_map_f32(CUtensorMap* map, float* data, std::int64_t batch, std::int64_t seq_len,
                            std::int64_t heads, std::int64_t head_dim, std::int64_t dilation,
                            std::int64_t phase, int box_rows);

}  // namespace dilated::cuda_fa3::details
