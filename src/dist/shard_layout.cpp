// dist/shard_layout.cpp - the size rules of sequence parallelism.
#include "dist/shard_layout.hpp"

#include <string>

#include "dilated/error.hpp"

namespace dilated {
namespace dist {
namespace {

std::string branch_text(std::size_t i, const Branch& b) {
  return "branch " + std::to_string(i) + " (w = " + std::to_string(b.segment_length) +
         ", r = " + std::to_string(b.dilation) + ")";
}

}  // namespace

void check_size_rules(const AttentionConfig& config, const ProblemShape& global, int ranks,
                      Layout layout) {
  validate(config, global);  // the single-rank rules on the gathered sequence
  if (config.block_sparse)
    throw Error("dist.block_sparse_unsupported",
                "sequence parallelism runs LongNet branches; block-sparse configs run on one "
                "rank (dilated::Plan)");
  const std::int64_t N = global.seq_len, P = ranks;
  if (P < 1) throw Error("dist.ranks_positive", "the communicator has " + std::to_string(P) + " ranks");
  if (N % P != 0)
    throw Error("dist.seq_len_divisible_by_ranks",
                "seq_len N = " + std::to_string(N) + " is not divisible by the number of ranks P = " +
                    std::to_string(P) + " (each rank holds l = N / P positions)");
  const std::int64_t l = N / P;
  if (layout == Layout::Zigzag) {
    if (N % (2 * P) != 0)
      throw Error("dist.zigzag_seq_len_divisible_by_2ranks",
                  "zigzag layout: seq_len N = " + std::to_string(N) +
                      " is not divisible by 2P = " + std::to_string(2 * P) +
                      " (each rank holds two chunks of N / 2P)");
    const std::int64_t h = N / (2 * P);
    for (std::size_t i = 0; i < config.branches.size(); ++i) {
      const std::int64_t w = config.branches[i].segment_length;
      if (w <= h && h % w != 0)
        throw Error("dist.zigzag_chunk_divisible_by_segment",
                    "zigzag layout: " + branch_text(i, config.branches[i]) +
                        " is local (w <= chunk N/2P = " + std::to_string(h) +
                        "), so the chunk must hold whole segments: " + std::to_string(h) + " % " +
                        std::to_string(w) + " != 0");
      if (w > h && w != N)
        throw Error("dist.zigzag_segment_is_sequence",
                    "zigzag layout: " + branch_text(i, config.branches[i]) +
                        " is longer than a chunk (N/2P = " + std::to_string(h) +
                        "), so it must span the whole sequence (w == N = " + std::to_string(N) +
                        "); use the contiguous layout for long dilated branches");
    }
    return;
  }
  for (std::size_t i = 0; i < config.branches.size(); ++i) {
    const std::int64_t w = config.branches[i].segment_length;
    if (w <= l) {
      if (l % w != 0)
        throw Error("dist.local_len_divisible_by_segment",
                    branch_text(i, config.branches[i]) + " is local (w <= l = N/P = " +
                        std::to_string(l) + "), so each rank must hold whole segments: l % w = " +
                        std::to_string(l % w) + " != 0");
    } else {
      if (w % l != 0)
        throw Error("dist.segment_divisible_by_local_len",
                    branch_text(i, config.branches[i]) + " spans ranks (w > l = N/P = " +
                        std::to_string(l) + "), so a segment must cover whole ranks: w % l = " +
                        std::to_string(w % l) + " != 0");
      if (N % w != 0)
        throw Error("dist.seq_len_divisible_by_segment",
                    branch_text(i, config.branches[i]) + " spans ranks, so seq_len N = " +
                        std::to_string(N) + " must be a multiple of w (no partial segment may "
                        "span ranks): N % w = " + std::to_string(N % w) + " != 0");
    }
  }
}

ShardLayout::ShardLayout(const AttentionConfig& config, const ProblemShape& global, int ranks,
                         Layout layout)
    : layout_(layout), ranks_(ranks), seq_len_(global.seq_len) {
  check_size_rules(config, global, ranks, layout);
  local_len_ = seq_len_ / ranks_;
  const std::int64_t unit = layout == Layout::Zigzag ? local_len_ / 2 : local_len_;
  for (const Branch& b : config.branches) {
    BranchSharding s;
    s.cross_rank = b.segment_length > unit;
    s.group_size = !s.cross_rank ? 1
                   : layout == Layout::Zigzag ? ranks_
                                              : static_cast<int>(b.segment_length / local_len_);
    branches_.push_back(s);
  }
}

std::vector<ShardWindow> ShardLayout::windows(int r) const {
  if (layout_ == Layout::Contiguous) return {ShardWindow{r * local_len_, local_len_, 0}};
  const std::int64_t h = local_len_ / 2;
  return {ShardWindow{r * h, h, 0}, ShardWindow{(2 * std::int64_t(ranks_) - 1 - r) * h, h, h}};
}

int ShardLayout::group_first(int branch, int r) const {
  const int g = branches_[static_cast<std::size_t>(branch)].group_size;
  return layout_ == Layout::Zigzag ? 0 : (r / g) * g;
}

}  // namespace dist
}  // namespace dilated
