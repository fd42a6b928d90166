// Block-sparse patterns: builders, validation and the run-length layout the
// kernels walk (see block_sparse.hpp).
#include "dilated/block_sparse.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "dilated/error.hpp"

namespace dilated {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
std::string str(std::int64_t x) { return std::to_string(x); }

void check_block_sizes(std::int64_t seq_len, std::int64_t block_q, std::int64_t block_k) {
  if (block_q < 1 || block_q > seq_len || block_k < 1 || block_k > seq_len)
    throw Error("block_sparse.block_size",
                "block-sparse block_q = " + str(block_q) + " and block_k = " + str(block_k) +
                    " must be in [1, seq_len = " + str(seq_len) + "]");
  // Run bounds are stored as int32 block indices.
  const std::int64_t most = std::numeric_limits<std::int32_t>::max() - 1;
  if (ceil_div(seq_len, block_q) > most || ceil_div(seq_len, block_k) > most)
    throw Error("block_sparse.block_count",
                "block-sparse: seq_len = " + str(seq_len) + " in blocks of " + str(block_q) +
                    " x " + str(block_k) + " gives more than 2^31 - 2 blocks per side");
}

// A square-block pattern with every block absent.
BlockSparsePattern empty_square(std::int64_t seq_len, std::int64_t block) {
  check_block_sizes(seq_len, block, block);
  BlockSparsePattern p;
  p.block_q = p.block_k = block;
  p.layouts = 1;
  const std::int64_t n = ceil_div(seq_len, block);
  p.mask.assign(static_cast<std::size_t>(n * n), 0);
  return p;
}

}  // namespace

std::int64_t BlockSparsePattern::num_q_blocks(std::int64_t seq_len) const {
  return block_q > 0 ? ceil_div(seq_len, block_q) : 0;
}
std::int64_t BlockSparsePattern::num_k_blocks(std::int64_t seq_len) const {
  return block_k > 0 ? ceil_div(seq_len, block_k) : 0;
}

double BlockSparsePattern::block_density() const {
  if (mask.empty()) return 0.0;
  std::size_t on = 0;
  for (std::uint8_t m : mask) on += m != 0;
  return static_cast<double>(on) / static_cast<double>(mask.size());
}

bool BlockSparsePattern::visits(std::int64_t layout, std::int64_t qb, std::int64_t kb,
                                std::int64_t seq_len) const {
  const std::int64_t nq = num_q_blocks(seq_len), nk = num_k_blocks(seq_len);
  return mask[static_cast<std::size_t>((layout * nq + qb) * nk + kb)] != 0;
}

BlockSparsePattern BlockSparsePattern::from_block_list(std::int64_t seq_len, std::int64_t block_q,
                                                       std::int64_t block_k, std::int64_t layouts,
                                                       const std::vector<BlockIndex>& blocks) {
  check_block_sizes(seq_len, block_q, block_k);
  if (layouts < 1)
    throw Error("block_sparse.layouts",
                "block-sparse layouts = " + str(layouts) + " must be 1 (shared) or heads");
  BlockSparsePattern p;
  p.block_q = block_q;
  p.block_k = block_k;
  p.layouts = layouts;
  const std::int64_t nq = p.num_q_blocks(seq_len), nk = p.num_k_blocks(seq_len);
  if (nq > std::numeric_limits<std::int64_t>::max() / nk / layouts)
    throw Error("block_sparse.block_count", "block-sparse mask size overflows");
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(layouts * nq * nk), 0);
  for (const BlockIndex& b : blocks) {
    if (b.layout < 0 || b.layout >= layouts || b.q_block < 0 || b.q_block >= nq ||
        b.k_block < 0 || b.k_block >= nk)
      throw Error("block_sparse.list_index",
                  "block-sparse block (layout " + str(b.layout) + ", q_block " + str(b.q_block) +
                      ", k_block " + str(b.k_block) + ") is outside " + str(layouts) +
                      " layouts x " + str(nq) + " query blocks x " + str(nk) + " key blocks");
    mask[static_cast<std::size_t>((b.layout * nq + b.q_block) * nk + b.k_block)] = 1;
  }
  p.mask = std::move(mask);
  return p;
}

BlockSparsePattern BlockSparsePattern::local_window(std::int64_t seq_len, std::int64_t block,
                                                    std::int64_t radius) {
  return global_local(seq_len, block, 0, radius);
}

BlockSparsePattern BlockSparsePattern::global_local(std::int64_t seq_len, std::int64_t block,
                                                    std::int64_t global, std::int64_t radius) {
  if (radius < 0 || global < 0)
    throw Error("block_sparse.helper_argument", "block-sparse radius = " + str(radius) +
                                                    " and global = " + str(global) +
                                                    " must be >= 0");
  BlockSparsePattern p = empty_square(seq_len, block);
  const std::int64_t n = p.num_q_blocks(seq_len);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      p.mask[static_cast<std::size_t>(i * n + j)] =
          (j >= i - radius && j <= i + radius) || i < global || j < global;
  return p;
}

BlockSparsePattern BlockSparsePattern::dilated_blocks(std::int64_t seq_len, std::int64_t block,
                                                      std::int64_t segment_blocks,
                                                      std::int64_t dilation) {
  if (segment_blocks < 1 || dilation < 1)
    throw Error("block_sparse.helper_argument",
                "block-sparse segment_blocks = " + str(segment_blocks) + " and dilation = " +
                    str(dilation) + " must be >= 1");
  BlockSparsePattern p = empty_square(seq_len, block);
  const std::int64_t n = p.num_q_blocks(seq_len);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      p.mask[static_cast<std::size_t>(i * n + j)] =
          i / segment_blocks == j / segment_blocks && (j - i) % dilation == 0;
  return p;
}

void validate_block_sparse(const BlockSparsePattern& p, std::int64_t seq_len,
                           std::int64_t heads) {
  check_block_sizes(seq_len, p.block_q, p.block_k);
  if (p.layouts != 1 && p.layouts != heads)
    throw Error("block_sparse.layouts", "block-sparse layouts = " + str(p.layouts) +
                                            " must be 1 (shared by all heads) or heads = " +
                                            str(heads));
  const std::int64_t nq = p.num_q_blocks(seq_len), nk = p.num_k_blocks(seq_len);
  if (nq > std::numeric_limits<std::int64_t>::max() / nk / p.layouts ||
      static_cast<std::int64_t>(p.mask.size()) != p.layouts * nq * nk)
    throw Error("block_sparse.mask_shape",
                "block-sparse mask has " + str(static_cast<std::int64_t>(p.mask.size())) +
                    " entries; seq_len = " + str(seq_len) + " in blocks of " + str(p.block_q) +
                    " x " + str(p.block_k) + " needs layouts x " + str(nq) + " x " + str(nk) +
                    " = " + str(p.layouts * nq * nk));
}

BlockSparseLayout build_block_sparse_layout(const BlockSparsePattern& p, std::int64_t seq_len) {
  BlockSparseLayout l;
  l.layouts = p.layouts;
  l.num_q_blocks = p.num_q_blocks(seq_len);
  l.num_k_blocks = p.num_k_blocks(seq_len);
  const std::int64_t nq = l.num_q_blocks, nk = l.num_k_blocks;
  auto on = [&](std::int64_t lay, std::int64_t i, std::int64_t j) {
    return p.mask[static_cast<std::size_t>((lay * nq + i) * nk + j)] != 0;
  };
  // Runs along one line of the mask: `line` outer index, `n` inner length.
  auto add_runs = [](std::vector<std::int32_t>& runs, std::int64_t n, auto&& visited) {
    for (std::int64_t j = 0; j < n;) {
      if (!visited(j)) {
        ++j;
        continue;
      }
      const std::int64_t first = j;
      while (j < n && visited(j)) ++j;
      runs.push_back(static_cast<std::int32_t>(first));
      runs.push_back(static_cast<std::int32_t>(j));
    }
  };
  l.row_offsets.push_back(0);
  for (std::int64_t lay = 0; lay < l.layouts; ++lay)
    for (std::int64_t i = 0; i < nq; ++i) {
      add_runs(l.row_runs, nk, [&](std::int64_t j) { return on(lay, i, j); });
      l.row_offsets.push_back(static_cast<std::int64_t>(l.row_runs.size() / 2));
    }
  l.col_offsets.push_back(0);
  for (std::int64_t lay = 0; lay < l.layouts; ++lay)
    for (std::int64_t j = 0; j < nk; ++j) {
      add_runs(l.col_runs, nq, [&](std::int64_t i) { return on(lay, i, j); });
      l.col_offsets.push_back(static_cast<std::int64_t>(l.col_runs.size() / 2));
    }
  return l;
}

bool block_sparse_rows_all_attend(const BlockSparsePattern& p, std::int64_t seq_len, bool causal) {
  const std::int64_t nq = p.num_q_blocks(seq_len), nk = p.num_k_blocks(seq_len);
  for (std::int64_t l = 0; l < p.layouts; ++l)
    for (std::int64_t i = 0; i < nq; ++i) {
      std::int64_t j = 0;
      while (j < nk && !p.visits(l, i, j, seq_len)) ++j;  // first listed key block
      if (j == nk) return false;
      // Causal: the block's first row sees key j * block_k only if it is not later.
      if (causal && j * p.block_k > i * p.block_q) return false;
    }
  return true;
}

double block_sparse_pairs(const BlockSparsePattern& p, std::int64_t layout, std::int64_t seq_len,
                          bool causal) {
  const std::int64_t nq = p.num_q_blocks(seq_len), nk = p.num_k_blocks(seq_len);
  double total = 0;
  for (std::int64_t i = 0; i < nq; ++i) {
    const std::int64_t q0 = i * p.block_q, q1 = std::min(q0 + p.block_q, seq_len);
    for (std::int64_t j = 0; j < nk; ++j) {
      if (!p.visits(layout, i, j, seq_len)) continue;
      const std::int64_t k0 = j * p.block_k, k1 = std::min(k0 + p.block_k, seq_len);
      if (!causal) {
        total += static_cast<double>(q1 - q0) * static_cast<double>(k1 - k0);
        continue;
      }
      for (std::int64_t q = q0; q < q1; ++q)  // keys k0 .. min(q, k1 - 1)
        total += static_cast<double>(std::max<std::int64_t>(0, std::min(q + 1, k1) - k0));
    }
  }
  return total;
}

}  // namespace dilated
