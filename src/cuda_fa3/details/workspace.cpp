// cuda_fa3/details/workspace.cpp - see workspace.hpp.
#include "cuda_fa3/details/workspace.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error("cuda.runtime", std::string("cuda_fa3 workspace: ") + what + ": " + cudaGetErrorString(e));
}

// One pool per device, made on first use and kept for the process.
cudaMemPool_t pool_of_current_device() {
  static std::mutex mutex;
  static std::map<int, cudaMemPool_t> pools;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  auto it = pools.find(device);
  if (it != pools.end()) return it->second;
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool = nullptr;
  check(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate");
  std::uint64_t keep_all = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all),
        "cudaMemPoolSetAttribute(release threshold)");
  pools.emplace(device, pool);
  return pool;
}

}  // namespace

void* workspace_alloc(std::size_t bytes, cudaStream_t stream) {
  void* p = nullptr;
  // DILATED_FA3_WORKSPACE=async: the device's default pool, as before this
  // pool existed (for A/B runs).
  static const bool default_pool = [] {
    const char* e = std::getenv("DILATED_FA3_WORKSPACE");
    return e && std::strcmp(e, "async") == 0;
  }();
  if (default_pool) {
    check(cudaMallocAsync(&p, bytes, stream), "cudaMallocAsync");
    return p;
  }
  check(cudaMallocFromPoolAsync(&p, bytes, pool_of_current_device(), stream), "cudaMallocFromPoolAsync");
  return p;
}

void workspace_free(void* p, cudaStream_t stream) {
  if (p) cudaFreeAsync(p, stream);
}

}  // namespace dilated::cuda_fa3::details
