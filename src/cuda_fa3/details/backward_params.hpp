// cuda_fa3/details/backward_params.hpp - one backward launch (one branch):
// key tiles of this branch, the merged LSE and delta = rowsum(dO * O) of the
// forward, and fp32 gradient accumulators shared by all branches.
#pragma once

#include <cuda.h>
#include <cstdint>

#include "cuda_fa3/details/forward_params.hpp"
#include "dilated/dropout_rng.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

struct BackwardParams {
  PatternParams pattern;
  int branch = 0;
  int batch = 0;
  int heads = 0;
  int head_dim = 0;
  std::int64_t seq_len = 0;
  std::int64_t num_segments = 0;       // of this branch that the launch visits
  std::int64_t first_segment = 0;      // the first of them
  std::int64_t tiles_per_segment = 0;  // key tiles of kBlockN sparse rows
  // Windows of the sequence the query-side (q, dout, lse, delta, dq) and
  // key-side (k, v, dk, dv) tensors hold; backward() passes [0, seq_len).
  // Windowed calls run v1 only (v2 assumes the whole sequence).
  std::int64_t q_window_begin = 0, q_window_len = 0;
  std::int64_t k_window_begin = 0, k_window_len = 0;
  bool windowed = false;  // false: the whole sequence (q/k windows = [0, seq_len))
  float scale = 0.f;                   // softmax scale
  float scale_log2 = 0.f;              // softmax scale * log2(e)
  float output_scale = 1.f;            // c in out = c * softmax(S) V
  DropoutParams dropout;               // the forward's mask, recomputed
  float keep_scale = 1.f;
  bool causal = false;
  // [b, h, s] merged LSE of the forward, and delta, both fp32.
  const float* lse = nullptr;
  std::int64_t lse_stride_b = 0, lse_stride_h = 0, lse_stride_s = 0;
  const float* delta = nullptr;  // dense [b, h, s] (v2); v1 reads it through the strides
  std::int64_t delta_stride_b = 0, delta_stride_h = 0, delta_stride_s = 0;
  // Dense [b, s, h, d] fp32 accumulators (s: the window's rows for v1).
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};

struct BackwardArgs {
  BackwardParams p;
  CUtensorMap q[kMaxPhases];
  CUtensorMap k[kMaxPhases];
  CUtensorMap v[kMaxPhases];
  CUtensorMap dout[kMaxPhases];
};

}  // namespace dilated::cuda_fa3::details
