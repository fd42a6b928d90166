// offload/chunk_layout.cpp - see chunk_layout.hpp.
#include "offload/chunk_layout.hpp"

#include <limits>
#include <numeric>
#include <string>

#include "dilated/error.hpp"

namespace dilated {
namespace offload {
namespace {

std::string branch_name(std::size_t i, const Branch& b) {
  return "branch " + std::to_string(i) + " (segment_length=" + std::to_string(b.segment_length) +
         ", dilation=" + std::to_string(b.dilation) + ")";
}

}  // namespace

std::int64_t chunk_granularity(const AttentionConfig& config) {
  if (config.block_sparse || config.branches.empty())
    throw Error("offload.no_branches",
                "chunk_granularity needs LongNet branches (block-sparse patterns do not split into chunks)");
  std::int64_t g = 1;
  for (const Branch& b : config.branches) {
    if (b.segment_length < 1)
      throw Error("config.segment_length_positive", "segment_length = " + std::to_string(b.segment_length));
    const std::int64_t a = g / std::gcd(g, b.segment_length);
    if (a > std::numeric_limits<std::int64_t>::max() / b.segment_length)
      throw Error("offload.granularity_overflow", "the lcm of the segment lengths overflows 64 bits");
    g = a * b.segment_length;
  }
  return g;
}

std::int64_t chunk_len_for(const AttentionConfig& config, std::int64_t seq_len, std::int64_t target_len) {
  if (seq_len < 1 || target_len < 1)
    throw Error("offload.chunk_len_positive", "chunk_len_for: seq_len = " + std::to_string(seq_len) +
                                                  " and target_len = " + std::to_string(target_len) +
                                                  " must be >= 1");
  const std::int64_t g = chunk_granularity(config);
  const std::int64_t c = target_len < g ? g : target_len / g * g;
  return c < seq_len ? c : seq_len;
}

ChunkLayout::ChunkLayout(const AttentionConfig& config, const ProblemShape& shape, std::int64_t chunk_len)
    : shape_(shape) {
  validate(config, shape);  // the layer itself first (names the core rule that breaks)
  if (chunk_len < 1)
    throw Error("offload.chunk_len_positive", "chunk_len = " + std::to_string(chunk_len) + " must be >= 1");
  seq_len_ = shape.seq_len;
  chunk_len_ = chunk_len < seq_len_ ? chunk_len : seq_len_;
  num_chunks_ = seq_len_ / chunk_len_ + (seq_len_ % chunk_len_ != 0 ? 1 : 0);
  if (num_chunks_ == 1) return;  // one chunk is the whole layer: nothing to split
  const std::string at = "chunk_len = " + std::to_string(chunk_len_) + " (seq_len " + std::to_string(seq_len_) + ")";
  if (config.block_sparse)
    throw Error("offload.block_sparse",
                "a block-sparse pattern is a mask over the whole sequence and is not split into chunks; " + at +
                    " would need several (use chunk_len >= seq_len)");
  if (config.dropout_p > 0.0)
    throw Error("offload.dropout",
                "dropout's mask is a function of global positions (dropout_rng.hpp) and a chunk plan counts "
                "from 0, so chunks would draw a different mask; dropout_p = " +
                    std::to_string(config.dropout_p) + " with " + at);
  for (std::size_t i = 0; i < config.branches.size(); ++i) {
    const Branch& b = config.branches[i];
    if (b.segment_length > chunk_len_)
      throw Error("offload.segment_longer_than_chunk",
                  branch_name(i, b) + " has segments longer than the chunk, " + at +
                      ": its segments would span chunks (a global branch); use chunk_len >= " +
                      std::to_string(b.segment_length) + " and a multiple of every segment length (" +
                      std::to_string(chunk_granularity(config)) + ")");
    if (chunk_len_ % b.segment_length != 0)
      throw Error("offload.chunk_not_multiple_of_segment",
                  branch_name(i, b) + ": " + at + " is not a multiple of its segment_length, so a segment "
                  "would straddle two chunks; use a multiple of " + std::to_string(chunk_granularity(config)));
  }
}

Chunk ChunkLayout::chunk(std::int64_t i) const {
  if (i < 0 || i >= num_chunks_)
    throw Error("offload.chunk_index", "chunk " + std::to_string(i) + " is not in [0, " +
                                           std::to_string(num_chunks_) + ")");
  const std::int64_t b = i * chunk_len_;
  const std::int64_t e = b + chunk_len_ < seq_len_ ? b + chunk_len_ : seq_len_;
  return Chunk{b, e - b};
}

ProblemShape ChunkLayout::chunk_shape(std::int64_t len) const {
  ProblemShape s = shape_;
  s.seq_len = len;
  return s;
}

}  // namespace offload
}  // namespace dilated
