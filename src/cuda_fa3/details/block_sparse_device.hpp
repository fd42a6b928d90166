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

// Key blocks of `block` keys that each (layout, 128-row query tile) visits:
// its query block's runs, clipped as the forward's tile decode clips them
// (pattern.hpp key_spans: causal limit, sequence end). The kernel reads one
// count per tile instead of walking the runs through global memory first.
inline std::vector<std::int32_t> tile_block_counts(const BlockSparseLayout& l, BlockSparseRule host_rule,
                                                   std::int64_t seq_len, bool causal, int block) {
  host_rule.row_offsets = l.row_offsets.data();
  host_rule.row_runs = l.row_runs.data();
  PatternParams p;
  p.block_sparse = host_rule;
  const std::int64_t tiles = (seq_len + 127) / 128;
  std::vector<std::int32_t> counts(std::size_t(l.layouts * tiles), 0);
  for (std::int64_t layout = 0; layout < l.layouts; ++layout)
    for (std::int64_t t = 0; t < tiles; ++t) {
      const std::int64_t q0 = 128 * t, qn = seq_len - q0 < 128 ? seq_len - q0 : 128;
      const Spans spans = key_spans(p, causal, layout, 0, seq_len, q0, qn);  // head `layout` has layout `layout`
      std::int64_t n = 0;
      for (std::int64_t i = 0; i < spans.count; ++i) {
        std::int64_t b, e;
        spans.get(i, &b, &e);
        if (e > b) n += (e - b + block - 1) / block;
      }
      counts[std::size_t(layout * tiles + t)] = std::int32_t(n);
    }
  return counts;
}

// Copies the pattern's run layout to device memory (synchronously) and points
// `rule` at it; the returned handle frees it when the last plan copy goes.
// The allocation starts with tile_block_counts(..., causal, block) for the
// forward: the handle's address is theirs (ForwardParams::tile_blocks).
inline std::shared_ptr<void> upload_block_sparse(const BlockSparsePattern& pattern, std::int64_t seq_len,
                                                 bool causal, int block, BlockSparseRule* rule) {
  const BlockSparseLayout l = build_block_sparse_layout(pattern, seq_len);
  // The rule's sizes (make_pattern set them) with host pointers, for the counts.
  const std::vector<std::int32_t> counts = tile_block_counts(l, *rule, seq_len, causal, block);
  const std::size_t sizes[5] = {counts.size() * sizeof(std::int32_t),
                                l.row_offsets.size() * sizeof(std::int64_t),
                                l.col_offsets.size() * sizeof(std::int64_t),
                                l.row_runs.size() * sizeof(std::int32_t),
                                l.col_runs.size() * sizeof(std::int32_t)};
  const void* src[5] = {counts.data(), l.row_offsets.data(), l.col_offsets.data(), l.row_runs.data(),
                        l.col_runs.data()};
  std::size_t offset[5], total = 0;
  for (int i = 0; i < 5; ++i) {  // one allocation, 16-byte aligned parts
    offset[i] = total;
    total += (sizes[i] + 15) / 16 * 16;
  }
  void* base = nullptr;
  if (cudaMalloc(&base, total > 0 ? total : 16) != cudaSuccess)
    throw Error("cuda.runtime", "cuda_fa3: cannot allocate the block-sparse layout");
  std::shared_ptr<void> handle(base, [](void* p) { cudaFree(p); });
  char* bytes = static_cast<char*>(base);
  for (int i = 0; i < 5; ++i)
    if (sizes[i] > 0 &&
        cudaMemcpy(bytes + offset[i], src[i], sizes[i], cudaMemcpyHostToDevice) != cudaSuccess)
      throw Error("cuda.runtime", "cuda_fa3: cannot copy the block-sparse layout");
  rule->row_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[1]);
  rule->col_offsets = reinterpret_cast<const std::int64_t*>(bytes + offset[2]);
  rule->row_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[3]);
  rule->col_runs = reinterpret_cast<const std::int32_t*>(bytes + offset[4]);
  return handle;
}

}  // namespace dilated::cuda_fa3::details
