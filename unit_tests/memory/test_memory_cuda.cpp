// CUDA upstreams (DILATED_ENABLE_CUDA=ON builds; skipped without a device):
// stream-ordered device memory and pinned host memory, their misuse checks,
// and a pool over cudaMallocAsync that stops calling it in steady state.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "memory/cuda_resources.hpp"
#include "memory/errors.hpp"
#include "memory/numa.hpp"
#include "memory/pool_resource.hpp"

namespace {

using namespace dilated::memory;
constexpr std::size_t MiB = 1024 * 1024;

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(MemoryCuda, AsyncResourceRoundTripsOnAStream) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  CudaAsyncResource device;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const Stream s{stream};
  const std::size_t bytes = 3 * MiB + 100;
  void* p = device.allocate(bytes, 256, s);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 256, 0u);
  std::vector<unsigned char> in(bytes, 0x5A), out(bytes, 0);
  ASSERT_EQ(cudaMemcpyAsync(p, in.data(), bytes, cudaMemcpyHostToDevice, stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(out.data(), p, bytes, cudaMemcpyDeviceToHost, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(in, out);
  EXPECT_EQ(device.bytes_held(), bytes);
  EXPECT_THROW(device.deallocate(p, bytes - 1, 256, s), dilated::Error);
  device.deallocate(p, bytes, 256, s);
  try {
    device.deallocate(p, bytes, 256, s);
    ADD_FAILURE() << "double free accepted";
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), rules::double_free);
  }
  EXPECT_THROW(device.allocate(device.max_bytes() + 1), dilated::Error);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaStreamDestroy(stream);
}

TEST(MemoryCuda, PinnedHostIsPageLockedAndChecked) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  PinnedHostResource pinned;
  void* p = pinned.allocate(MiB);
  cudaPointerAttributes attr{};
  ASSERT_EQ(cudaPointerGetAttributes(&attr, p), cudaSuccess);
  EXPECT_EQ(attr.type, cudaMemoryTypeHost);
  int x = 0;
  EXPECT_THROW(pinned.deallocate(&x, sizeof x), dilated::Error);
  pinned.deallocate(p, MiB);
  EXPECT_EQ(pinned.bytes_held(), 0u);
}

TEST(MemoryCuda, HwlocNamesTheNodeNearestToTheDevice) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  if (!numa_topology().hwloc) GTEST_SKIP() << numa_topology().summary;
  const int node = numa_node_of_cuda_device(0);
  EXPECT_GE(node, 0) << "hwloc found no CPU set for device 0";
  NumaHostResource staging(NumaOptions{node, false, true});  // pinned-staging placement
  void* p = staging.allocate(1 << 20, 4096);
  std::memset(p, 0, 1 << 20);
  const PagePlacement where = page_placement(p, 1 << 20);
  ASSERT_GT(where.per_node.size(), static_cast<std::size_t>(node));
  EXPECT_EQ(where.per_node[node], where.sampled) << where.to_string();
  staging.deallocate(p, 1 << 20, 4096);
}

TEST(MemoryCuda, PoolOverAsyncResourceIsQuietInSteadyState) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  CudaAsyncResource device;
  PoolOptions o;
  o.policy.min_available_fraction = 0.05;
  o.policy.probe = cuda_device_memory;
  PoolResource pool(device, o);
  for (int i = 0; i < 100; ++i) {
    void* a = pool.allocate(64 * MiB);
    void* b = pool.allocate(1000);
    pool.deallocate(b, 1000);
    pool.deallocate(a, 64 * MiB);
  }
  EXPECT_EQ(pool.stats().upstream_allocations, 2u);
  pool.release_cached();
  EXPECT_EQ(device.bytes_held(), 0u);
  cudaDeviceSynchronize();
}

}  // namespace
