// memory/cuda_resources.hpp - CUDA upstreams (built when DILATED_ENABLE_CUDA=ON).
//
//  * CudaAsyncResource: device memory from the stream-ordered allocator
//    (cudaMallocAsync / cudaFreeAsync on the caller's stream, the device's
//    default memory pool), so a free is ordered after the kernels queued
//    before it on that stream.
//  * PinnedHostResource: page-locked host memory (cudaHostAlloc), the staging
//    buffers of host<->device and MPI transfers.
// Plain CUDA runtime API, no Kokkos: usable from src/dist and src/cuda_fa3.
#pragma once

#include "dilated/dilated_config.hpp"
#include "memory/resource.hpp"
#include "memory/system_memory.hpp"
#include "memory/upstream_registry.hpp"

#if DILATED_ENABLE_CUDA
namespace dilated {
namespace memory {

class CudaAsyncResource final : public MemoryResource {
 public:
  // device -1: the current device at construction.
  explicit CudaAsyncResource(int device = -1);
  std::string name() const override { return "cuda-async(device " + std::to_string(device_) + ")"; }
  MemoryKind kind() const override { return MemoryKind::Device; }
  std::size_t max_alignment() const override { return 256; }
  std::size_t max_bytes() const override { return total_; }
  std::size_t bytes_held() const { return registry_.bytes(); }
  int device() const { return device_; }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override;

 private:
  int device_ = 0;
  std::size_t total_ = 0;
  UpstreamRegistry registry_;
};

class PinnedHostResource final : public MemoryResource {
 public:
  std::string name() const override { return "cuda-pinned-host"; }
  MemoryKind kind() const override { return MemoryKind::PinnedHost; }
  std::size_t max_alignment() const override { return 4096; }
  std::size_t max_bytes() const override;
  std::size_t bytes_held() const { return registry_.bytes(); }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override;

 private:
  UpstreamRegistry registry_;
};

// cudaMemGetInfo of the current device, for a device pool's PressurePolicy.
SystemMemory cuda_device_memory();

}  // namespace memory
}  // namespace dilated
#endif
