// dist/host_staging.cpp - see host_staging.hpp.
#include "dist/host_staging.hpp"

#include <string>

#include "dilated/error.hpp"

#if DILATED_ENABLE_CUDA
#include <cuda_runtime.h>
#endif

namespace dilated {
namespace dist {

void* HostStaging::take(std::size_t bytes) {
  blocks_.reserve(blocks_.size() + 1);  // no throw after the allocation below
  return host_.allocate(bytes, memory::kDefaultAlignment);
}

const void* HostStaging::send_buffer(const void* send, std::size_t bytes) {
  if (bytes == 0 || send == nullptr || !copier_.needs_staging(send)) return send;
  void* h = take(bytes);
  try {
    copier_.to_host(h, send, bytes);
  } catch (...) {
    host_.deallocate(h, bytes, memory::kDefaultAlignment);
    throw;
  }
  blocks_.push_back({h, bytes, nullptr});
  return h;
}

void* HostStaging::recv_buffer(void* recv, std::size_t bytes) {
  if (bytes == 0 || recv == nullptr || !copier_.needs_staging(recv)) return recv;
  void* h = take(bytes);
  blocks_.push_back({h, bytes, recv});
  return h;
}

void HostStaging::complete() {
  try {
    for (const Block& b : blocks_)
      if (b.device) copier_.to_device(b.device, b.host, b.bytes);
  } catch (...) {
    discard();
    throw;
  }
  discard();
}

void HostStaging::discard() noexcept {
  for (const Block& b : blocks_) {
    try {
      host_.deallocate(b.host, b.bytes, memory::kDefaultAlignment);
    } catch (...) {  // our own blocks: cannot be misuse; nothing to report from here
    }
  }
  blocks_.clear();
}

#if DILATED_ENABLE_CUDA
namespace {
void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw Error("dist.host_staging", std::string(what) + " failed: " + cudaGetErrorString(rc));
}

class CudaStagingCopier final : public StagingCopier {
 public:
  bool needs_staging(const void* p) const override {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      cudaGetLastError();  // plain host memory unknown to CUDA (older runtimes): clear it
      return false;
    }
    return a.type == cudaMemoryTypeDevice;
  }
  void to_host(void* host, const void* device, std::size_t bytes) override {
    check_cuda(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost),
               "cudaMemcpy (device to host staging)");
  }
  void to_device(void* device, const void* host, std::size_t bytes) override {
    check_cuda(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice),
               "cudaMemcpy (host staging to device)");
  }
};
}  // namespace

std::unique_ptr<StagingCopier> make_cuda_staging_copier() {
  return std::make_unique<CudaStagingCopier>();
}
#endif

}  // namespace dist
}  // namespace dilated
