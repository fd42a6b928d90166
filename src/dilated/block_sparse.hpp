// dilated/block_sparse.hpp - block-sparse attention as the user describes it:
// the sequence is cut into query blocks of `block_q` rows and key blocks of
// `block_k` rows (the last block of each may be shorter), and a block mask
// says which key blocks each query block attends to. Local windows,
// global + local and dilated block layouts are masks built by the helpers
// below; an arbitrary block list converts with from_block_list.
//
// Block-sparse attention is its own attention kind: a config with
// `block_sparse` set has no LongNet branches (validate() says so if both are
// given). Inside a visited block every (query, key) pair is attended, except
// that `causal` still masks key position > query position, so diagonal
// blocks are masked by position. A query row whose blocks are all absent (or
// all causally masked) attends to nothing: out 0, lse -inf, as everywhere in
// the library.
//
// The kernels never read this mask: the plan turns it into a compressed
// row/column list of runs of consecutive blocks (BlockSparseLayout below),
// copies that to device memory and hands the kernels a BlockSparseRule
// (pattern.hpp), so work and memory grow with the visited blocks only. The
// mask itself is [layouts][query blocks][key blocks] bytes on the host,
// e.g. 64 MiB for one shared layout of 1M tokens in 128-row blocks.
#pragma once

#include <cstdint>
#include <vector>

namespace dilated {

// One entry of a block list: query block q_block of `layout` visits key block k_block.
struct BlockIndex {
  std::int64_t layout = 0;
  std::int64_t q_block = 0;
  std::int64_t k_block = 0;
};

struct BlockSparsePattern {
  std::int64_t block_q = 0;  // query rows per block, 1..seq_len
  std::int64_t block_k = 0;  // key rows per block, 1..seq_len
  // 1: one layout shared by every head; shape.heads: layout h for head h.
  std::int64_t layouts = 1;
  // [layouts][num_q_blocks][num_k_blocks], row-major; nonzero = visited.
  std::vector<std::uint8_t> mask;

  // ceil(seq_len / block): the last block may be shorter.
  std::int64_t num_q_blocks(std::int64_t seq_len) const;
  std::int64_t num_k_blocks(std::int64_t seq_len) const;
  // Fraction of (query block, key block) pairs visited, over all layouts.
  double block_density() const;
  bool visits(std::int64_t layout, std::int64_t q_block, std::int64_t k_block,
              std::int64_t seq_len) const;

  // An explicit list; duplicates are allowed. Throws dilated::Error
  // (block_sparse.block_size, block_sparse.layouts, block_sparse.list_index).
  static BlockSparsePattern from_block_list(std::int64_t seq_len, std::int64_t block_q,
                                            std::int64_t block_k, std::int64_t layouts,
                                            const std::vector<BlockIndex>& blocks);
  // Square blocks of `block` rows; query block i visits key blocks
  // [i - radius, i + radius] (with causal, effectively [i - radius, i]).
  static BlockSparsePattern local_window(std::int64_t seq_len, std::int64_t block,
                                         std::int64_t radius);
  // local_window plus `global` leading blocks that every query block visits
  // and whose queries visit every key block (Longformer/BigBird style).
  static BlockSparsePattern global_local(std::int64_t seq_len, std::int64_t block,
                                         std::int64_t global, std::int64_t radius);
  // LongNet at block granularity: blocks are grouped into segments of
  // `segment_blocks`; query block i visits the key blocks j of its segment
  // with (j - i) % dilation == 0.
  static BlockSparsePattern dilated_blocks(std::int64_t seq_len, std::int64_t block,
                                           std::int64_t segment_blocks, std::int64_t dilation);
};

// The mask as the kernels walk it: for every (layout, query block) the runs
// of consecutive visited key blocks, and for every (layout, key block) the
// runs of query blocks visiting it (the backward's key-major kernels). A run
// is a pair [first, last + 1) of block indices.
struct BlockSparseLayout {
  std::int64_t layouts = 0, num_q_blocks = 0, num_k_blocks = 0;
  std::vector<std::int64_t> row_offsets;  // layouts * num_q_blocks + 1, in runs
  std::vector<std::int32_t> row_runs;     // 2 per run: key blocks
  std::vector<std::int64_t> col_offsets;  // layouts * num_k_blocks + 1, in runs
  std::vector<std::int32_t> col_runs;     // 2 per run: query blocks
};

// Assumes validate() accepted the pattern for this seq_len.
BlockSparseLayout build_block_sparse_layout(const BlockSparsePattern& pattern,
                                            std::int64_t seq_len);

// Throws dilated::Error (rules block_sparse.*) for a pattern that does not fit
// `seq_len` and `heads`. Writes nothing.
void validate_block_sparse(const BlockSparsePattern& pattern, std::int64_t seq_len,
                           std::int64_t heads);

// True when every query row attends to at least one key: each query block
// of each layout lists a key block, and (causal) its first listed key block
// starts at or before the query block's first row.
bool block_sparse_rows_all_attend(const BlockSparsePattern& pattern, std::int64_t seq_len,
                                  bool causal);

// Attended (query, key) pairs of one head's layout, exact (causal counts only
// key <= query inside diagonal blocks).
double block_sparse_pairs(const BlockSparsePattern& pattern, std::int64_t layout,
                          std::int64_t seq_len, bool causal);

}  // namespace dilated
