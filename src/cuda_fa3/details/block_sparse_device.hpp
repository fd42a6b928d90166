// cuda_fa3/details/block_sparse_device.hpp - what the H100 forward supports of
// a block-sparse pattern, and the device copy of its run layout that the
// kernels' BlockSparseRule (dilated/pattern.hpp) reads. Included by plan.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dilated/block_sparse.hpp"
#include "dilated/config.hpp"
#include "dilated/error.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

// Query tiles are 128 rows and key blocks 128 (head_dim 64/128) or 64 (256)
// keys, so 128-multiples make every tile lie in one query block and every
// key block in one key block. Returns "" when the forward can run it.
inline std::string block_sparse_unsupported(const AttentionConfig& c) {
  const BlockSparsePattern& b = *c.block_sparse;
  if (b.block_q % 128 != 0 || b.block_k % 128 != 0)
    return "block-sparse block_q = " + std::to_string(b.block_q) + ", block_k = " +
           std::to_string(b.block_k) + " are not multiples of 128 (the kernel's query tile and "
           "key block)";
  if (c.dropout_p > 0.0) return "block-sparse with dropout is not implemented in cuda_fa3";
  return "";
}

// Copies the pattern's run layout to device memory (synchronously) and points
// `rule` at it; the returned handle frees it when the last plan copy goes.
inline std::shared_ptr<void> upload_block_sparse(const BlockSparsePattern& pattern,
                                                 std::int64_t seq_len, BlockSparseRule* rule) {
  const BlockSparseLayout l = build_block_sparse_layout(pattern, seq_len);
  const std::size_t sizes[4] = {l.row_offsets.size() * sizeof(std::int64_t),
                                l.col_offsets.size() * sizeof(std::int64_t),
                                l.row_runs.size() * sizeof(std::int32_t),
                                l.col_runs.size() * sizeof(std::int32_t)};
  const void* src[4] = {l.row_offsets.data(), l.col_offsets.data(), l.row_runs.data(),
                        l.col_runs.data()};
  std::size_t offset[4], total = 0;
  for (int i = 0; i < 4; ++i) {  // one allocation, 16-byte aligned parts
    offset[i] = total;
    total += (sizes[i] + 15) / 16 * 16;
  }
  void* base = nullptr;
  if (cudaMalloc(&base, total > 0 ? total : 16) != cudaSuccess)
    throw Error("cuda.runtime", "cuda_fa3: cannot allocate the block-sparse layout");
  std::shared_ptr<void> handle(base, [](void* p) { cudaFree(p); });
  char* bytes = static_cast<char*>(base);
  for (int i = 0; i < 4; ++i)
    if (sizes[i] > 0 &&
        cudaMemcpy(bytes + offset[i], src[i], sizes[i], cudaMemcpyHostToDevice) != cudaSuccess)
      throw Error("cuda.runtime", "cuda_fa3: cannot copy the block-sparse layout");
  rule->row_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[0]);
  rule->col_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[1]);
  rule->row_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[2]);
  rule->col_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[3]);
  return handle;
}

}  // namespace dilated::cuda_fa3::details
