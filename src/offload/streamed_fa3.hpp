// offload/streamed_fa3.hpp - the cuda_fa3 layer run chunk by chunk, with any
// tensor in device memory or in host pinned/registered memory: sequences
// whose tensors do not fit the GPU (LongNet at 4M tokens: 16 GiB per
// [1, 4M, 16, 128] bf16 tensor, 128 GiB for a layer's eight).
//
//   dilated::offload::StreamedPlan sp(config, shape, /*chunk_len=*/65536, cuda_fa3::DType::bf16);
//   sp.forward(q, k, v, out, lse, stream);      // cuda_fa3::Plan's contract
//   sp.backward(q, k, v, out, lse, dout, dq, dk, dv, stream);
//
// How: the chunking of chunk_layout.hpp (every branch segment-local, so each
// chunk of C positions is a layer of its own) with one cuda_fa3::Plan of
// seq_len C (and one for a shorter last chunk). Tensors in device memory are
// passed to the chunk plan as pointer + offset with their own strides, no
// copy. Tensors in host memory (cudaMallocHost / cudaHostAlloc /
// cudaHostRegister; pageable memory is refused, its copies would not be
// asynchronous) go through device staging buffers, two slots per tensor:
// chunk i's inputs are copied in on an H2D stream while chunk i-1 computes on
// the caller's stream, and its outputs are copied out on a D2H stream while
// chunk i+1 computes (events order slot reuse). So the workspace is one
// chunk's (the backward's fp32 accumulators, fa3.hpp) and the staging is
// 2 slots x (host-resident tensors) x one chunk's slice.
//
// Calls are asynchronous on `stream`, like cuda_fa3::Plan's: host-resident
// outputs are complete, and host-resident inputs may be reused, once the
// stream reaches the end of the call. One call at a time per StreamedPlan
// (it owns the staging and the streams); a call is ordered after the
// previous one's completion on the device, whatever stream each used.
//
// Layering: uses cuda_fa3's public Plan only; nothing below includes this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda_fa3/fa3.hpp"
#include "offload/chunk_layout.hpp"

namespace dilated {
namespace offload {

// Where a tensor lives, as cudaPointerGetAttributes reports it (managed
// memory counts as device: the kernels read it directly).
enum class Residence { device, host };
const char* to_string(Residence r);
// Throws dilated::Error ("offload.pageable") for memory CUDA does not know
// (pageable host memory): staging from it would be synchronous.
Residence residence_of(const void* p);

// Timings of the last call, when profiling is on (milliseconds; CUDA events
// per chunk and stream). Busy times are sums over chunks of each stream's
// work (copies, kernels), so wall < compute + h2d + d2h means they overlapped.
struct StreamProfile {
  int chunks = 0;
  double wall_ms = 0, compute_ms = 0, h2d_ms = 0, d2h_ms = 0;
  std::int64_t h2d_bytes = 0, d2h_bytes = 0;
};

class StreamedPlan {
 public:
  // Throws dilated::Error for configs that do not split into chunks
  // (chunk_layout.hpp) and what cuda_fa3::Plan's constructor refuses.
  StreamedPlan(const AttentionConfig& config, const ProblemShape& shape, std::int64_t chunk_len,
               cuda_fa3::DType dtype, int device = -1);
  ~StreamedPlan();
  StreamedPlan(const StreamedPlan&) = delete;
  StreamedPlan& operator=(const StreamedPlan&) = delete;

  const ChunkLayout& layout() const { return layout_; }
  const ProblemShape& shape() const { return shape_; }
  // The plan of a full chunk (support(), backward_kernel_name(), ...).
  const cuda_fa3::Plan& chunk_plan() const { return *plan_; }

  // cuda_fa3::Plan::forward / backward on the whole sequence. Tensors in host
  // memory need the dense layout within a batch (stride_d 1, stride_h =
  // head_dim, stride_s = heads * head_dim; lse: stride_s 1), any stride_b.
  // Throws dilated::Error before any copy or launch.
  void forward(cuda_fa3::Tensor q, cuda_fa3::Tensor k, cuda_fa3::Tensor v, cuda_fa3::MutableTensor out,
               cuda_fa3::LseTensor lse, cudaStream_t stream);
  void backward(cuda_fa3::Tensor q, cuda_fa3::Tensor k, cuda_fa3::Tensor v, cuda_fa3::Tensor out,
                cuda_fa3::LseTensor lse, cuda_fa3::Tensor dout, cuda_fa3::MutableTensor dq,
                cuda_fa3::MutableTensor dk, cuda_fa3::MutableTensor dv, cudaStream_t stream);

  // Device bytes of the staging for `host_tensors` host-resident 16-bit
  // tensors and `host_lse` host-resident lse (0 or 1): two chunk slices each.
  std::size_t staging_bytes_for(int host_tensors, int host_lse) const;
  // Device bytes of one chunk's backward workspace (cuda_fa3's contract:
  // 3 fp32 accumulators of a chunk's q plus one float per row).
  std::size_t backward_workspace_bytes() const;
  // Staging held now (kept between calls; grown when a call needs more).
  std::size_t staging_bytes_held() const;
  // Waits for the last call and frees the staging.
  void release_staging();

  void set_profile(bool on);
  // Waits for the last call; zeros unless it ran with profiling on.
  StreamProfile last_profile() const;

 private:
  struct Operand;
  struct Impl;
  void run(Operand* ops, int count, bool backward, cudaStream_t stream);

  ChunkLayout layout_;
  ProblemShape shape_;
  cuda_fa3::DType dtype_;
  std::unique_ptr<cuda_fa3::Plan> plan_, tail_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace offload
}  // namespace dilated
