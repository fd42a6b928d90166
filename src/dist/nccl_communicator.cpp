// dist/nccl_communicator.cpp - NCCL transport: grouped ncclSend/ncclRecv for
// ring steps, ncclAllReduce for validation.
#include "dist/nccl_communicator.hpp"

#include <string>
#include <vector>

#include "dilated/error.hpp"

namespace dilated {
namespace dist {
namespace {

void check(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess)
    throw Error("dist.nccl", std::string(what) + " failed: " + ncclGetErrorString(rc));
}
void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw Error("dist.cuda", std::string(what) + " failed: " + cudaGetErrorString(rc));
}

}  // namespace

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream)
    : comm_(comm), stream_(stream) {
  check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
  check(ncclCommCount(comm_, &size_), "ncclCommCount");
  if (stream_ == nullptr) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    own_stream_ = true;
  }
}

NcclCommunicator::~NcclCommunicator() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (own_stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::allreduce_min_max(const std::int64_t* in, std::int64_t* min,
                                         std::int64_t* max, int n) {
  const std::size_t bytes = sizeof(std::int64_t) * static_cast<std::size_t>(n);
  std::int64_t* dev = nullptr;
  check(cudaMalloc(reinterpret_cast<void**>(&dev), 3 * bytes), "cudaMalloc");
  try {
    check(cudaMemcpyAsync(dev, in, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
    check(ncclGroupStart(), "ncclGroupStart");
    check(ncclAllReduce(dev, dev + n, static_cast<std::size_t>(n), ncclInt64, ncclMin, comm_,
                        stream_),
          "ncclAllReduce(min)");
    check(ncclAllReduce(dev, dev + 2 * n, static_cast<std::size_t>(n), ncclInt64, ncclMax,
                        comm_, stream_),
          "ncclAllReduce(max)");
    check(ncclGroupEnd(), "ncclGroupEnd");
    check(cudaMemcpyAsync(min, dev + n, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpy");
    check(cudaMemcpyAsync(max, dev + 2 * n, bytes, cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpy");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  } catch (...) {
    cudaFree(dev);
    throw;
  }
  check(cudaFree(dev), "cudaFree");
}

void NcclCommunicator::start_exchange(const void* send, std::size_t send_bytes, int dest,
                                      void* recv, std::size_t recv_bytes, int src) {
  // One group: NCCL matches the send and the receive without deadlock, also
  // when dest == src == this rank.
  check(ncclGroupStart(), "ncclGroupStart");
  if (dest >= 0) check(ncclSend(send, send_bytes, ncclChar, dest, comm_, stream_), "ncclSend");
  if (src >= 0) check(ncclRecv(recv, recv_bytes, ncclChar, src, comm_, stream_), "ncclRecv");
  check(ncclGroupEnd(), "ncclGroupEnd");
}

void NcclCommunicator::wait() { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

}  // namespace dist
}  // namespace dilated
