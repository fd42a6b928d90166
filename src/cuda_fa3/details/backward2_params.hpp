// cuda_fa3/details/backward2_params.hpp - one launch (one branch) of the
// FA3-style backward ("v2", backward2_kernel.cuh).
//
// It reuses v1's BackwardParams (pattern, scales, merged LSE and delta, fp32
// accumulators) and adds what the new structure needs: a TMA descriptor of the
// fp32 dQ accumulator per dilation residue (dQ leaves the CTA by TMA
// reduce-add, not by per-thread atomics), K/V descriptors with 128-row boxes
// (one CTA owns 128 keys), and the 16-bit dK/dV outputs for the direct path.
#pragma once

#include <cuda.h>
#include <cstdint>

#include "cuda_fa3/details/backward_params.hpp"

namespace dilated::cuda_fa3::details {

struct Backward2Args {
  BackwardParams p;
  // true: one branch with dilation 1, so each key row belongs to exactly one
  // CTA of exactly one launch and dK/dV go straight to the 16-bit outputs
  // below (no fp32 accumulator, no memset, no convert pass). false: dK/dV are
  // added into p.dk/p.dv (fp32), as v1 does; branches run one after another.
  bool direct_dkv = false;
  void* dk_out = nullptr;
  void* dv_out = nullptr;
  std::int64_t dk_stride_b = 0, dk_stride_s = 0, dk_stride_h = 0;
  std::int64_t dv_stride_b = 0, dv_stride_s = 0, dv_stride_h = 0;
  CUtensorMap q[kMaxPhases];     // box 64 x 64 rows (one query block)
  CUtensorMap dout[kMaxPhases];  // box 64 x 64 rows
  CUtensorMap k[kMaxPhases];     // box 64 x 128 rows (the CTA's key block)
  CUtensorMap v[kMaxPhases];     // box 64 x 128 rows
  CUtensorMap dq[kMaxPhases];    // fp32 accumulator, box 32 x 64 rows
};

}  // namespace dilated::cuda_fa3::details
