// dist/shard_layout.hpp - which positions each rank holds, which branches are
// local and which span ranks, and the size rules that make this well defined.
//
// Contiguous layout: rank r holds [r*l, (r+1)*l), l = N / P. A branch with
// w <= l is local (needs l % w == 0: whole segments per rank); a branch with
// w > l spans w / l consecutive ranks (needs w % l == 0 and N % w == 0), which
// exchange their sparsified K/V rows. ("N divisible by P * max w", the rule of
// the Python seed, is wrong: it forbids exactly the w > l case.)
//
// Zigzag layout (load balance for causal attention): the sequence is cut into
// 2P chunks of h = N / (2P); rank r holds chunks r and 2P-1-r, so every rank
// has one early and one late chunk and the causal work per rank is equal. A
// branch is local when h % w == 0; otherwise it must be global (w == N, e.g.
// dense attention), and all ranks exchange.
#pragma once

#include <cstdint>
#include <vector>

#include "dilated/config.hpp"

namespace dilated {
namespace dist {

enum class Layout { Contiguous, Zigzag };

// A run of consecutive positions a rank holds: global [begin, begin + len),
// stored at rows [row, row + len) of the rank's shard tensors.
struct ShardWindow {
  std::int64_t begin = 0, len = 0, row = 0;
};

struct BranchSharding {
  bool cross_rank = false;   // segments span ranks: K/V rows are exchanged
  int group_size = 1;        // ranks sharing a segment (1 when local)
};

class ShardLayout {
 public:
  // Checks every size rule for P ranks (and the core rules of `validate` on
  // the global shape); throws dilated::Error naming the rule and the values.
  ShardLayout(const AttentionConfig& config, const ProblemShape& global, int ranks, Layout layout);

  Layout layout() const { return layout_; }
  int ranks() const { return ranks_; }
  std::int64_t seq_len() const { return seq_len_; }
  std::int64_t local_len() const { return local_len_; }  // rows of every rank's shard
  const BranchSharding& branch(int i) const { return branches_[static_cast<std::size_t>(i)]; }
  int num_branches() const { return static_cast<int>(branches_.size()); }

  // The windows rank `r` holds, in row order (1 contiguous, 2 zigzag).
  std::vector<ShardWindow> windows(int r) const;
  // The ranks sharing rank r's segments of a cross-rank branch, as the ring
  // [first, first + group_size) (every rank for a zigzag cross-rank branch).
  int group_first(int branch, int r) const;

 private:
  Layout layout_;
  int ranks_;
  std::int64_t seq_len_, local_len_;
  std::vector<BranchSharding> branches_;
};

// The size rules alone, for reporting: throws like the constructor.
void check_size_rules(const AttentionConfig& config, const ProblemShape& global, int ranks,
                      Layout layout);

}  // namespace dist
}  // namespace dilated
