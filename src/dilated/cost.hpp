// dilated/cost.hpp - exact work counts of a config, for FLOP rates in
// benchmarks and the demo.
#pragma once

#include "dilated/config.hpp"

namespace dilated {

// All three validate their arguments (dilated::Error) first.
// Attended (query, key) entries summed over batch, heads and branches (a key
// kept by two branches counts twice, as in the merged softmax).
double attended_pairs(const AttentionConfig& config, const ProblemShape& shape);
// Forward FLOPs: 4 * head_dim per attended pair (QK^T and PV, multiply-add = 2).
double forward_flops(const AttentionConfig& config, const ProblemShape& shape);
// Backward FLOPs: 2.5x forward (the FlashAttention convention).
double backward_flops(const AttentionConfig& config, const ProblemShape& shape);

}  // namespace dilated
