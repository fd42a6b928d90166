// offload/chunk_layout.hpp - when a layer splits exactly into independent
// chunks of the sequence, and where the chunks are.
//
// A LongNet branch is segment-local: position p only meets positions of its
// own segment [s*w, (s+1)*w) (pattern.hpp), and a head's offset counts from
// the segment's start. So if every branch's segment length w divides the
// chunk length C, every chunk [c*C, (c+1)*C) is a union of whole segments of
// every branch, and the layer over the sequence is the same layer run on each
// chunk as a sequence of its own (a plan of seq_len C): same segments, same
// offsets, same causal order. The last chunk may be shorter (N % C): its
// segments are the full plan's last segments, truncated at N exactly as the
// full plan truncates them (allow_partial_segments; without that flag N is a
// multiple of every w, and so is the last chunk's length).
//
// What does NOT split, and is refused here before any work:
//  - a branch whose segments are longer than C or do not tile it (w > C or
//    C % w != 0): its segments would straddle chunks (a global branch);
//  - dropout: its mask is a function of global positions (dropout_rng.hpp),
//    while a chunk plan counts positions from 0;
//  - block-sparse patterns: the block mask is over the whole sequence.
// A single chunk (C >= N) is the whole layer, so none of these rules apply.
//
// Used by offload/chunked_plan.hpp (portable plans, Kokkos Views) and
// offload/streamed_fa3.hpp (cuda_fa3, host-resident tensors staged through
// device buffers). Plain C++; throws dilated::Error.
#pragma once

#include <cstdint>
#include <vector>

#include "dilated/config.hpp"

namespace dilated {
namespace offload {

// Positions [begin, begin + len) of the sequence.
struct Chunk {
  std::int64_t begin = 0, len = 0;
};

class ChunkLayout {
 public:
  // Validates the config and shape (dilated::validate) and the chunking
  // rules above; throws dilated::Error naming the rule and the values.
  ChunkLayout(const AttentionConfig& config, const ProblemShape& shape, std::int64_t chunk_len);

  std::int64_t seq_len() const { return seq_len_; }
  // The chunk length in use: the requested one, or N when that is larger.
  std::int64_t chunk_len() const { return chunk_len_; }
  std::int64_t num_chunks() const { return num_chunks_; }
  Chunk chunk(std::int64_t i) const;
  // Length of the last chunk (== chunk_len() unless N % C != 0).
  std::int64_t tail_len() const { return seq_len_ - (num_chunks_ - 1) * chunk_len_; }
  // The shape of a chunk plan of `len` positions (the problem's batch, heads, head_dim).
  ProblemShape chunk_shape(std::int64_t len) const;

 private:
  std::int64_t seq_len_ = 0, chunk_len_ = 0, num_chunks_ = 0;
  ProblemShape shape_;
};

// The least chunk length every branch's segments tile: lcm of the segment
// lengths (throws dilated::Error if it overflows or the config has none).
std::int64_t chunk_granularity(const AttentionConfig& config);

// The largest multiple of chunk_granularity() that is <= target_len (at
// least one granule), capped at seq_len: a convenient chunk length for a
// token budget (e.g. from the memory a caller can spare).
std::int64_t chunk_len_for(const AttentionConfig& config, std::int64_t seq_len, std::int64_t target_len);

}  // namespace offload
}  // namespace dilated
