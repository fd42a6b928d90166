// cuda_fa3/details/dropout.cuh - dropout on a block of probabilities, with the
// library's counter-based rule (dilated/dropout_rng.hpp): the same mask as the
// portable kernels and the float64 reference, recomputed in the backward.
#pragma once

#include <cstdint>

#include "dilated/dropout_rng.hpp"

namespace dilated::cuda_fa3::details {

// s: probabilities of the thread's two rows (accumulator layout, see
// softmax.cuh) for keys [key_begin, key_begin + BlockN) in sparse indices;
// first/dilation map sparse indices to positions. Kept entries are scaled by
// 1/(1-p), dropped ones zeroed. The row sums (and so the LSE) stay undropped.
template <int BlockN>
__device__ __forceinline__ void apply_dropout(float (&s)[BlockN / 2], const DropoutParams& drop,
                                              float keep_scale, int b, int h, int branch,
                                              std::int64_t first, std::int64_t dilation,
                                              const std::int64_t (&rows)[2], std::int64_t key_begin,
                                              int lane) {
#pragma unroll
  for (int j = 0; j < BlockN / 8; ++j) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const std::int64_t kpos = first + (key_begin + 8 * j + 2 * (lane % 4) + c) * dilation;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const std::int64_t qpos = first + rows[r] * dilation;
        float& x = s[4 * j + 2 * r + c];
        x = drop.keeps(b, h, qpos, kpos, branch) ? x * keep_scale : 0.f;
      }
    }
  }
}

}  // namespace dilated::cuda_fa3::details
