// dilated/reference.hpp - the float64 reference: slow, materialises scores,
// written to be obviously right. Used by the tests and by the demo's spot
// check; never by the kernels.
//
// Forward follows the paper literally (Eq. 10): each branch's attention is
// computed on its own, then branch outputs are merged with weights
// s_i / sum_j s_j. Backward differentiates the merged function through the
// equivalent single softmax over the multiset union of the branches' keys.
//
// Tensors are host arrays, contiguous [batch, seq, heads, head_dim]; lse is
// [batch, heads, seq].
#pragma once

#include <cstdint>

#include "dilated/config.hpp"

namespace dilated {
namespace reference {

// One output row (b, p, h): out_row[head_dim] and its LSE, computed in
// float64. The float overload reads float inputs (for spot checks of large
// problems without a float64 copy) and still computes in float64.
void forward_row(const AttentionConfig& config, const ProblemShape& shape, const double* q,
                 const double* k, const double* v, std::int64_t b, std::int64_t p,
                 std::int64_t h, double* out_row, double* lse);
void forward_row(const AttentionConfig& config, const ProblemShape& shape, const float* q,
                 const float* k, const float* v, std::int64_t b, std::int64_t p,
                 std::int64_t h, double* out_row, double* lse);

void forward(const AttentionConfig& config, const ProblemShape& shape, const double* q,
             const double* k, const double* v, double* out, double* lse);

// Gradients of sum(dout * out) w.r.t. q, k, v. Overwrites dq, dk, dv.
void backward(const AttentionConfig& config, const ProblemShape& shape, const double* q,
              const double* k, const double* v, const double* dout, double* dq, double* dk,
              double* dv);

}  // namespace reference
}  // namespace dilated
