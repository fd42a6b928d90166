#include "memory/cuda_resources.hpp"

#if DILATED_ENABLE_CUDA
#include <cuda_runtime.h>

#include "memory/errors.hpp"

namespace dilated {
namespace memory {

namespace {
std::string cuda_error(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

// Makes `device` current for a scope, restoring the caller's device after.
struct DeviceScope {
  int previous = -1;
  explicit DeviceScope(int device) {
    cudaGetDevice(&previous);
    if (previous != device) cudaSetDevice(device);
  }
  ~DeviceScope() {
    int now = -1;
    cudaGetDevice(&now);
    if (now != previous && previous >= 0) cudaSetDevice(previous);
  }
};
}  // namespace

SystemMemory cuda_device_memory() {
  SystemMemory m;
  std::size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess) {
    m.total = total;
    m.available = free_bytes;
  }
  return m;
}

CudaAsyncResource::CudaAsyncResource(int device) {
  if (device < 0) {
    const cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) throw Error(rules::unsupported, "cuda-async: no CUDA device (" + cuda_error(e) + ")");
  }
  device_ = device;
  int supported = 0;
  cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device_);
  if (!supported)
    throw Error(rules::unsupported, name() + ": the device or driver has no stream-ordered allocator "
                                             "(cudaDevAttrMemoryPoolsSupported = 0)");
  DeviceScope scope(device_);
  total_ = cuda_device_memory().total;
}

void* CudaAsyncResource::do_allocate(std::size_t bytes, std::size_t, Stream s) {
  DeviceScope scope(device_);
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(s.handle));
  if (e != cudaSuccess || !p) {
    cudaGetLastError();  // clear the sticky-free error state of the runtime
    throw OutOfMemory(name() + ": cudaMallocAsync(" + std::to_string(bytes) + " bytes) failed: " +
                      cuda_error(e));
  }
  registry_.add(p, bytes);
  return p;
}

void CudaAsyncResource::do_deallocate(void* p, std::size_t bytes, std::size_t, Stream s) {
  registry_.remove(name(), p, bytes);
  DeviceScope scope(device_);
  cudaFreeAsync(p, static_cast<cudaStream_t>(s.handle));
}

std::size_t PinnedHostResource::max_bytes() const {
  static const std::size_t total = host_system_memory().total;
  return total ? total : ~std::size_t(0) >> 1;
}

void* PinnedHostResource::do_allocate(std::size_t bytes, std::size_t, Stream) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (e != cudaSuccess || !p) {
    cudaGetLastError();
    throw OutOfMemory(name() + ": cudaHostAlloc(" + std::to_string(bytes) + " bytes) failed: " +
                      cuda_error(e));
  }
  registry_.add(p, bytes);
  return p;
}

void PinnedHostResource::do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) {
  registry_.remove(name(), p, bytes);
  cudaFreeHost(p);
}

}  // namespace memory
}  // namespace dilated
#endif
