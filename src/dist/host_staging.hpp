// dist/host_staging.hpp - device buffers through host staging blocks, for a
// transport that reads and writes host memory only (MPI without CUDA
// awareness).
//
// At start_exchange a device send buffer is copied into a host block, which
// is what the transport sends; a device receive buffer gets a host block to
// receive into. When the transport's wait() has completed every transfer,
// complete() copies each received block to its device buffer and returns all
// blocks. Blocks come from a MemoryResource (pinned host memory behind a pool
// in CUDA builds: src/memory), so steady-state exchanges allocate nothing.
//
// The copies are synchronous: the plan fences its kernels before a buffer is
// handed to a transport that is not stream-ordered, and reads a received
// buffer only after wait() returns (communicator.hpp), so both ends see
// finished data. What counts as device memory, and how bytes move, is a
// StagingCopier: cudaPointerGetAttributes and cudaMemcpy in CUDA builds
// (make_cuda_staging_copier); tests on the CPU use a copier that treats chosen
// host ranges as "device" memory.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "dilated/dilated_config.hpp"
#include "memory/resource.hpp"

namespace dilated {
namespace dist {

class StagingCopier {
 public:
  virtual ~StagingCopier() = default;
  // true: p is memory the transport cannot reach (device memory).
  virtual bool needs_staging(const void* p) const = 0;
  virtual void to_host(void* host, const void* device, std::size_t bytes) = 0;
  virtual void to_device(void* device, const void* host, std::size_t bytes) = 0;
};

// The staging blocks of the transfers started since the last complete().
// Not thread-safe: one per communicator, used by the thread that calls it.
class HostStaging {
 public:
  HostStaging(memory::MemoryResource& host, StagingCopier& copier) : host_(host), copier_(copier) {}
  ~HostStaging() { discard(); }
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // What to hand the transport instead of `send`: a host copy of it if it
  // needs staging (copied now), else `send` itself.
  const void* send_buffer(const void* send, std::size_t bytes);
  // What the transport should receive into instead of `recv`: a host block
  // whose bytes complete() copies to `recv`, or `recv` itself.
  void* recv_buffer(void* recv, std::size_t bytes);
  // After the transport completed every transfer: received blocks to their
  // device buffers, then every block back to the resource.
  void complete();
  // Every block back without copying (a failed transfer).
  void discard() noexcept;
  std::size_t open_blocks() const { return blocks_.size(); }
  memory::MemoryResource& host_resource() const { return host_; }

 private:
  struct Block {
    void* host;
    std::size_t bytes;
    void* device;  // receive: where the bytes go; send: null
  };
  void* take(std::size_t bytes);
  memory::MemoryResource& host_;
  StagingCopier& copier_;
  std::vector<Block> blocks_;
};

#if DILATED_ENABLE_CUDA
// Device memory by cudaPointerGetAttributes (cudaMemoryTypeDevice is staged;
// host, pinned host and managed memory, which the host can reach, go direct);
// synchronous cudaMemcpy.
std::unique_ptr<StagingCopier> make_cuda_staging_copier();
#endif

}  // namespace dist
}  // namespace dilated
