// memory/resource.hpp - the one interface every piece of src/memory speaks.
//
// Modelled on RMM's device_memory_resource / std::pmr::memory_resource:
// allocate and deallocate take the size, the alignment and the stream (the
// execution-space instance) the memory is used on, so stream-ordered
// upstreams (cudaMallocAsync) and pools can be stacked behind one type.
// The argument checks common to all resources live here (non-virtual entry
// points), so every resource rejects the same misuse with the same rule and
// before touching any state.
#pragma once

#include <cstddef>
#include <string>

namespace dilated {
namespace memory {

// An opaque stream handle: a cudaStream_t for CUDA resources, null for the
// default stream and for host resources.
struct Stream {
  void* handle = nullptr;
  friend bool operator==(Stream a, Stream b) { return a.handle == b.handle; }
  friend bool operator!=(Stream a, Stream b) { return a.handle != b.handle; }
};

enum class MemoryKind { Host, PinnedHost, Device };
const char* to_string(MemoryKind k);

// Alignment every allocation gets unless a larger one is asked: 256 bytes is
// what cudaMalloc guarantees and covers every SIMD width and cache line.
inline constexpr std::size_t kDefaultAlignment = 256;

class MemoryResource {
 public:
  virtual ~MemoryResource() = default;
  MemoryResource() = default;
  MemoryResource(const MemoryResource&) = delete;
  MemoryResource& operator=(const MemoryResource&) = delete;

  // Throws dilated::Error (rules::zero_size, huge_size, alignment) on a bad
  // request and OutOfMemory when the memory is not there. Never returns null.
  void* allocate(std::size_t bytes, std::size_t alignment = kDefaultAlignment, Stream s = {});
  // `bytes` and `alignment` must be those given to allocate. Throws
  // dilated::Error (rules::double_free, foreign_pointer, size_mismatch) on
  // misuse, leaving the resource unchanged.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = kDefaultAlignment,
                  Stream s = {});

  virtual std::string name() const = 0;
  virtual MemoryKind kind() const = 0;
  // Largest alignment allocate() honours, and largest request it can ever
  // satisfy (physical memory for host resources, a hard limit for pools).
  virtual std::size_t max_alignment() const = 0;
  virtual std::size_t max_bytes() const = 0;

 protected:
  virtual void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) = 0;
  virtual void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) = 0;
};

}  // namespace memory
}  // namespace dilated
