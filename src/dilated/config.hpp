// dilated/config.hpp - what the user asks for: the branches of a dilated
// attention layer, its options, and the problem shape a plan is built for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dilated/block_sparse.hpp"

namespace dilated {

// One LongNet branch: the sequence is cut into segments of `segment_length`
// tokens and, inside each segment, a head keeps every `dilation`-th position
// starting at its offset.
struct Branch {
  std::int64_t segment_length = 0;  // w_i
  std::int64_t dilation = 1;        // r_i
};

// How heads are assigned to branches and offsets.
enum class HeadMode {
  // LongNet (arXiv 2307.02486, Eq. 9-15): every head runs every branch; head h
  // uses offset h mod r_i; branch outputs merge with weights s_i / sum_j s_j
  // (s_i = the branch's softmax denominator), i.e. ONE softmax over the
  // multiset union of the branches' keys.
  LongNet,
  // The head-group scheme of the popular Python package dilated-attention-pytorch:
  // heads are split into one contiguous group per branch (the first H mod k
  // groups get one extra head), group i runs only branch i with offset
  // i mod r_i, and the output is divided by the number of branches k.
  // This is a DIFFERENT function from LongNet's Eq. 10; offered for parity.
  HeadGroups,
};

struct AttentionConfig {
  std::vector<Branch> branches;
  bool causal = false;  // key position <= query position, by original positions
  // Softmax scale; 0 means the default 1/sqrt(head_dim).
  double softmax_scale = 0.0;
  // Dropout on the normalised attention probabilities (inverted dropout,
  // counter-based RNG, the same mask in backward). 0 disables it and is
  // bit-identical to a config without dropout.
  double dropout_p = 0.0;
  std::uint64_t dropout_seed = 0;
  HeadMode head_mode = HeadMode::LongNet;
  // false: seq_len must be a multiple of every segment length.
  // true: the last segment of a branch may be shorter (it is truncated, not
  // padded: no phantom keys enter the softmax).
  bool allow_partial_segments = false;
  // Block-sparse attention (block_sparse.hpp) instead of LongNet branches:
  // when set, `branches` must be empty and head_mode LongNet (the default).
  // causal, softmax_scale and dropout apply as for branches.
  std::optional<BlockSparsePattern> block_sparse;

  // Dense attention over the whole sequence (w = N, r = 1).
  static AttentionConfig dense(std::int64_t seq_len, bool causal = false);
  // The LongNet paper's schedule: w = 2048 * 2^i, r = {1, 2, 4, 6, 12} for
  // segment lengths that fit into seq_len (dense if none does). Sets
  // allow_partial_segments when seq_len is not a multiple of every w.
  static AttentionConfig longnet_default(std::int64_t seq_len);
};

// The shape of every [batch, seq, heads, head_dim] tensor a plan is used on.
struct ProblemShape {
  std::int64_t batch = 0;
  std::int64_t seq_len = 0;
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
};

// Largest number of branches a config may have (kernel parameter blocks are
// fixed-size so they can be passed by value to device kernels).
inline constexpr int kMaxBranches = 16;
// Largest head_dim the kernels support.
inline constexpr std::int64_t kMaxHeadDim = 256;

// Throws dilated::Error naming the first broken rule. Writes nothing.
void validate(const AttentionConfig& config, const ProblemShape& shape);

// The softmax scale actually used (resolves the 0 = default convention).
double effective_softmax_scale(const AttentionConfig& config, std::int64_t head_dim);

// Human-readable one-line summary, e.g. for logs and the demo.
std::string describe(const AttentionConfig& config);

}  // namespace dilated
