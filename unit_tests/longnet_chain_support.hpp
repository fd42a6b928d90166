// Shared by the CPU tests of cuda_fa3's LongNet chain schedules
// (test_longnet_dedup.cpp, test_longnet_fused_chain.cpp): a pattern from
// branches (partial segments allowed) and the chain plan of
// details/longnet_dedup.hpp.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "cuda_fa3/details/longnet_dedup.hpp"
#include "dilated/config.hpp"
#include "dilated/pattern.hpp"

namespace longnet_chain_test {

inline dilated::PatternParams pattern(std::vector<dilated::Branch> branches, std::int64_t n, std::int64_t heads) {
  dilated::AttentionConfig c;
  c.branches = std::move(branches);
  c.allow_partial_segments = true;
  return dilated::make_pattern(c, {1, n, heads, 64});
}

// longnet_dedup_plan for every branch (default_keys[i]: branch i runs its
// head_dim's default key block; missing entries: true), one entry a branch.
inline std::vector<dilated::cuda_fa3::details::DedupParams> plan(const dilated::PatternParams& p,
                                                                 std::vector<bool> default_keys = {}) {
  default_keys.resize(std::size_t(p.num_branches), true);
  bool keys[dilated::kMaxBranches] = {};
  for (int i = 0; i < p.num_branches; ++i) keys[i] = default_keys[std::size_t(i)];
  std::vector<dilated::cuda_fa3::details::DedupParams> out(std::size_t(dilated::kMaxBranches));
  dilated::cuda_fa3::details::longnet_dedup_plan(p, true, keys, out.data());
  out.resize(std::size_t(p.num_branches));
  return out;
}

}  // namespace longnet_chain_test
