// cuda_fa3/fa3.hpp - the H100 (sm_90a) backend's public interface: a plan over
// raw device pointers and element strides, so it needs no Kokkos CUDA build.
//
//   dilated::cuda_fa3::Plan plan(config, shape, dilated::cuda_fa3::DType::bf16);
//   if (plan.support().ok) plan.forward(q, k, v, out, lse, stream);
//
// Tensors are [batch, seq, heads, head_dim] 16-bit (bf16 or fp16) with a
// contiguous head_dim; lse is float [batch, heads, seq]. Semantics are the
// library's (see README): LongNet branches merged by their softmax
// denominators, rows no branch keeps get O = 0 and LSE = -inf.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dilated/config.hpp"
#include "dilated/pattern.hpp"

typedef struct CUstream_st* cudaStream_t;

namespace dilated::cuda_fa3 {

enum class DType { bf16, fp16 };
const char* to_string(DType t);

// A [batch, seq, heads, head_dim] tensor in device memory; strides in elements.
struct Tensor {
  const void* data = nullptr;
  std::int64_t stride_b = 0, stride_s = 0, stride_h = 0, stride_d = 1;
};
struct MutableTensor {
  void* data = nullptr;
  std::int64_t stride_b = 0, stride_s = 0, stride_h = 0, stride_d = 1;
};
// [batch, heads, seq] float in device memory; strides in elements.
struct LseTensor {
  float* data = nullptr;
  std::int64_t stride_b = 0, stride_h = 0, stride_s = 0;
};

// Whether this backend can run a problem on a device, and if not, why (the
// plan reports it so users see which path runs).
struct Support {
  bool ok = false;
  std::string reason;
};

// Which backward kernel runs. v1: one warpgroup per 64 keys, every case.
// v2: FA3-style (producer warp with TMA, two consumer warpgroups per 128
// keys, dQ by TMA reduce-add) for head_dim 64 and 128 without dropout or
// block sparsity; other
// problems run v1 even when v2 is asked for. v2_pipelined ("v2p"): v2 with
// the consumers software-pipelined (the next query block's S^T issued
// before this block's dQ store), same coverage as v2. automatic: the
// environment variable DILATED_FA3_BWD=v1|v2|v2p at the time of the call,
// else v2p where the v2 family is verified on an H100 (head_dim 64 and 128;
// details::backward2_auto, kBackward2AutoPipelined) and v1 elsewhere.
enum class BackwardKernel { automatic, v1, v2, v2_pipelined };

// True when the library was built with the sm_90a kernels.
bool compiled_in();

// Checks config/shape/dtype against what the kernels implement and the
// device's compute capability (runtime detection). Never throws.
Support query_support(const AttentionConfig& config, const ProblemShape& shape, DType dtype,
                      int device);

class Plan {
 public:
  // Validates the config and shape (throws dilated::Error) and records
  // whether the backend supports them on `device` (-1: the current device).
  Plan(AttentionConfig config, ProblemShape shape, DType dtype, int device = -1);

  const Support& support() const { return support_; }
  // What the backward supports (today the same as the forward; kept apart so
  // a future forward-only feature does not silently claim a backward).
  const Support& backward_support() const { return backward_support_; }
  // Whether the windowed calls below can run on this plan at all (for any
  // branch and any window inside the sequence): support() and, with
  // `backward`, backward_support(), and neither a block-sparse plan nor a
  // sequence of 2^31 or more. Never throws; the windowed calls refuse the
  // same problems. src/dist asks it in its collective check, so every rank
  // refuses before any output is written or any transfer starts.
  Support window_support(bool backward) const;
  const AttentionConfig& config() const { return config_; }
  void set_backward_kernel(BackwardKernel k) { backward_kernel_ = k; }
  // "v1", "v2" or "v2p": the kernel backward() runs now for this problem.
  const char* backward_kernel_name() const;
  const ProblemShape& shape() const { return shape_; }

  // Asynchronous on `stream`. Throws dilated::Error (before any launch) if the
  // backend does not support the problem or a tensor's pointer or strides are
  // unusable (16-byte aligned rows, contiguous head_dim, no aliasing of out).
  void forward(Tensor q, Tensor k, Tensor v, MutableTensor out, LseTensor lse,
               cudaStream_t stream) const;

  // Gradients of sum(dout * out) for the out and lse this plan's forward
  // produced. Asynchronous on `stream`; takes 3 fp32 accumulators of the
  // size of q (+ one float per row) from the stream-ordered allocator and
  // returns them before the call's work completes (stream order keeps it safe).
  void backward(Tensor q, Tensor k, Tensor v, Tensor out, LseTensor lse, Tensor dout,
                MutableTensor dq, MutableTensor dk, MutableTensor dv, cudaStream_t stream) const;

  // --- Windowed calls (sequence parallelism; dilated::Plan's semantics) ---
  // One branch; q, out and lse hold positions [q_begin, q_begin + q_len) of
  // the plan's sequence (lse: [batch, heads, q_len]), k and v hold
  // [k_begin, k_begin + k_len). Segments, head offsets and the causal mask
  // follow global positions. The pair's attention is merged into (out, lse)
  // by log-sum-exp: from out = 0, lse = -inf, one call per branch and key
  // window gives forward()'s result. Not for block-sparse plans.
  // Asynchronous on `stream`; throws dilated::Error before any launch.
  void forward_window(int branch, std::int64_t q_begin, std::int64_t q_len, Tensor q, MutableTensor out,
                      LseTensor lse, std::int64_t k_begin, std::int64_t k_len, Tensor k, Tensor v,
                      cudaStream_t stream) const;
  // delta[b, h, s] = rowsum(dout * out) over the `rows` rows of a query
  // window (fp32; LseTensor strides): backward_window's input besides lse.
  void backward_delta(Tensor out, Tensor dout, std::int64_t rows, LseTensor delta, cudaStream_t stream) const;
  // Adds the window pair's share of the gradient into dq (rows of the query
  // window) and dk, dv (rows of the key window); the caller zeroes them once.
  // lse is forward's final LSE of the queries, delta from backward_delta.
  // Runs the v1 kernel (the one that takes windows) whatever
  // backward_kernel_name() says; 16-bit gradients are read, added to in
  // fp32 and rounded once per call.
  void backward_window(int branch, std::int64_t q_begin, std::int64_t q_len, Tensor q, Tensor dout, LseTensor lse,
                       LseTensor delta, MutableTensor dq, std::int64_t k_begin, std::int64_t k_len, Tensor k,
                       Tensor v, MutableTensor dk, MutableTensor dv, cudaStream_t stream) const;

 private:
  // Throws unless a windowed call on this branch and these windows can run.
  void check_window_call(int branch, std::int64_t q_begin, std::int64_t q_len, std::int64_t k_begin,
                         std::int64_t k_len) const;

  AttentionConfig config_;
  ProblemShape shape_;
  DType dtype_;
  PatternParams pattern_;
  Support support_;
  Support backward_support_;
  // Device copy of a block-sparse layout (pattern_ points into it); shared by copies.
  std::shared_ptr<void> block_sparse_storage_;
  BackwardKernel backward_kernel_ = BackwardKernel::automatic;
};

}  // namespace dilated::cuda_fa3
