// dist/nccl_communicator.hpp - the NCCL transport (device buffers).
//
// Transfers run on a CUDA stream of their own (the user's, or one this object
// creates), so they overlap with the attention kernels on the plan's stream;
// the plan fences its instance before handing a buffer over, and wait()
// synchronises the transfer stream before a received buffer is read. Passing
// the plan's own stream is allowed too (then transfers and kernels
// serialise).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include "dist/communicator.hpp"

namespace dilated {
namespace dist {

class NcclCommunicator final : public Communicator {
 public:
  // `comm` was initialised by the user (ncclCommInitRank / ncclCommInitAll)
  // on the current device and must outlive this object. stream = nullptr:
  // create a private non-blocking stream for the transfers.
  explicit NcclCommunicator(ncclComm_t comm, cudaStream_t stream = nullptr);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }
  cudaStream_t stream() const { return stream_; }
  // Through a small device buffer (NCCL reduces device memory only).
  void allreduce_min_max(const std::int64_t* in, std::int64_t* min, std::int64_t* max,
                         int n) override;
  void start_exchange(const void* send, std::size_t send_bytes, int dest, void* recv,
                      std::size_t recv_bytes, int src) override;
  void wait() override;
  bool stream_ordered() const override { return false; }  // see the file comment
  bool accepts_host_memory() const override { return false; }
  bool accepts_device_memory() const override { return true; }

 private:
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  int rank_ = 0, size_ = 1;
};

}  // namespace dist
}  // namespace dilated
