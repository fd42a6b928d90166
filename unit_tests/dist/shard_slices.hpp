// Cutting a rank's shard out of a gathered tensor (flattened, float64), in
// the shard's row order - what every sequence-parallel test compares against.
// No MPI here: the NCCL tests use it too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <dilated_attention.hpp>
#include <vector>

#include "dist/shard_layout.hpp"

namespace dtest {

// The rows of a [B, N, H, D] tensor (flattened) that a rank's shard holds,
// as a [B, l, H, D] flattened tensor, in the shard's row order.
inline std::vector<double> shard_of(const std::vector<double>& g, const dilated::ProblemShape& s,
                                    const std::vector<dilated::dist::ShardWindow>& wins,
                                    std::int64_t l) {
  std::vector<double> out(static_cast<std::size_t>(s.batch * l * s.heads * s.head_dim));
  const std::int64_t row = s.heads * s.head_dim;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (const auto& w : wins)
      for (std::int64_t i = 0; i < w.len; ++i)
        std::copy_n(&g[static_cast<std::size_t>((b * s.seq_len + w.begin + i) * row)], row,
                    &out[static_cast<std::size_t>((b * l + w.row + i) * row)]);
  return out;
}
// Same for lse [B, H, N] -> [B, H, l].
inline std::vector<double> lse_shard_of(const std::vector<double>& g,
                                        const dilated::ProblemShape& s,
                                        const std::vector<dilated::dist::ShardWindow>& wins,
                                        std::int64_t l) {
  std::vector<double> out(static_cast<std::size_t>(s.batch * s.heads * l));
  for (std::int64_t bh = 0; bh < s.batch * s.heads; ++bh)
    for (const auto& w : wins)
      for (std::int64_t i = 0; i < w.len; ++i)
        out[static_cast<std::size_t>(bh * l + w.row + i)] =
            g[static_cast<std::size_t>(bh * s.seq_len + w.begin + i)];
  return out;
}

}  // namespace dtest
