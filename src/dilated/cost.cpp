#include "dilated/cost.hpp"

#include "dilated/pattern.hpp"

namespace dilated {

double attended_pairs(const AttentionConfig& c, const ProblemShape& s) {
  validate(c, s);
  const PatternParams pat = make_pattern(c, s);
  double total = 0;
  if (c.block_sparse) {
    const BlockSparsePattern& bs = *c.block_sparse;
    for (std::int64_t l = 0; l < bs.layouts; ++l)
      total += block_sparse_pairs(bs, l, s.seq_len, c.causal);
    if (bs.layouts == 1) total *= static_cast<double>(s.heads);
    return total * static_cast<double>(s.batch);
  }
  for (int i = 0; i < pat.num_branches; ++i) {
    for (std::int64_t h = 0; h < s.heads; ++h) {
      if (!pat.active(h, i)) continue;
      const std::int64_t o = pat.offset(h, i);
      const std::int64_t segs = pat.num_segments(i);
      // All full segments have the same count; only the last may differ.
      const double n_full = static_cast<double>(pat.kept_count(i, 0, o));
      const double n_last = static_cast<double>(pat.kept_count(i, segs - 1, o));
      auto pairs = [&](double n) { return c.causal ? n * (n + 1) / 2 : n * n; };
      total += (segs - 1) * pairs(n_full) + pairs(n_last);
    }
  }
  return total * static_cast<double>(s.batch);
}

double forward_flops(const AttentionConfig& c, const ProblemShape& s) {
  return 4.0 * static_cast<double>(s.head_dim) * attended_pairs(c, s);
}

double backward_flops(const AttentionConfig& c, const ProblemShape& s) {
  return 2.5 * forward_flops(c, s);
}

}  // namespace dilated
