// The sequence-parallel test cases for P ranks, shared by the MPI tests
// (test_seq_parallel.cpp, CPU ranks) and the NCCL tests (one GPU a rank).
#pragma once

#include <vector>

#include "../test_harness.hpp"
#include "dist/shard_layout.hpp"

namespace dtest {

struct DistCase {
  AttentionConfig config;
  ProblemShape shape;
  dilated::dist::Layout layout;
  const char* what;
};

// Shard length l = 24 (zigzag chunks of 12), N = 24 P, so every P has local
// branches (w <= 24) and cross-rank ones (w = 48 spans 2 ranks when P is
// even, w = N spans all).
inline std::vector<DistCase> dist_cases(int P) {
  using dilated::dist::Layout;
  const std::int64_t l = 24, N = l * P;
  std::vector<DistCase> cs;
  for (bool causal : {false, true}) {
    cs.push_back({make_config({{N, 1}}, causal), {1, N, 2, 16}, Layout::Contiguous, "dense"});
    cs.push_back({make_config({{8, 1}, {24, 2}, {N, 3}}, causal),
                  {2, N, 3, 16},
                  Layout::Contiguous,
                  "LongNet, local + all-rank branches"});
    cs.push_back({make_config({{12, 1}, {N, 5}}, causal),
                  {1, N, 5, 20},
                  Layout::Contiguous,
                  "w % r != 0 across ranks, d = 20"});
    cs.push_back({make_config({{8, 2}, {N, 4}}, causal),
                  {1, N, 4, 16},
                  Layout::Contiguous,
                  "unkept rows (no r = 1)"});
    cs.push_back({make_config({{8, 1}, {N, 2}, {24, 3}}, causal, HeadMode::HeadGroups),
                  {1, N, 5, 16},
                  Layout::Contiguous,
                  "head groups"});
    AttentionConfig drop = make_config({{8, 1}, {N, 2}}, causal);
    drop.dropout_p = 0.2;
    drop.dropout_seed = 99;
    cs.push_back({drop, {1, N, 2, 16}, Layout::Contiguous, "dropout (global positions)"});
    if (P % 2 == 0)
      cs.push_back({make_config({{6, 1}, {48, 2}, {N, 4}}, causal),
                    {1, N, 4, 16},
                    Layout::Contiguous,
                    "a branch spanning 2 of the ranks"});
    // No local branch: the last cross-rank branch splits its own block around
    // its final dK/dV return, the first one's return travels during its step 0.
    cs.push_back({make_config({{N, 2}, {N, 1}}, causal),
                  {1, N, 3, 16},
                  Layout::Contiguous,
                  "cross-rank branches only"});
    // A local branch lighter than half the cross-rank branch's own block: the
    // own block is still split, and the local branch runs after it.
    cs.push_back({make_config({{4, 2}, {N, 1}}, causal),
                  {1, N, 2, 16},
                  Layout::Contiguous,
                  "a light local branch after a split own block"});
    cs.push_back({make_config({{N, 1}}, causal), {1, N, 2, 16}, Layout::Zigzag, "zigzag dense"});
    cs.push_back({make_config({{4, 1}, {12, 2}, {N, 3}}, causal),
                  {1, N, 3, 16},
                  Layout::Zigzag,
                  "zigzag LongNet"});
  }
  return cs;
}

}  // namespace dtest
