// memory/workspace.hpp - the process-wide workspace stacks and a scoped block.
//
// A "stack" is tracking(pool(upstream)): the pool makes repeated workspace
// requests free of system calls, the tracking adaptor above it gives the
// statistics that prove it. The host stack is compiled here (upstream:
// NumaHostResource, placing memory on the calling thread's NUMA node where
// there is more than one); stacks for other Kokkos memory spaces live in
// kokkos_workspace.hpp.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "memory/pool_resource.hpp"
#include "memory/resource.hpp"
#include "memory/tracking_resource.hpp"

namespace dilated {
namespace memory {

struct WorkspaceStack {
  MemoryResource* upstream = nullptr;
  PoolResource* pool = nullptr;
  TrackingResource* tracking = nullptr;
  std::string placement;  // how the upstream places memory (for reports)
  MemoryResource& resource() const { return *tracking; }
};

// The host stack, built on first use; thread-safe.
WorkspaceStack& host_workspace_stack();

// A block of a resource for one scope (move-only).
class Workspace {
 public:
  Workspace() = default;
  Workspace(MemoryResource& r, std::size_t bytes, std::size_t alignment = kDefaultAlignment,
            Stream s = {})
      : r_(&r), p_(r.allocate(bytes, alignment, s)), bytes_(bytes), alignment_(alignment), s_(s) {}
  Workspace(Workspace&& o) noexcept { swap(o); }
  Workspace& operator=(Workspace&& o) noexcept {
    Workspace t(std::move(o));
    swap(t);
    return *this;
  }
  ~Workspace() {
    if (p_) r_->deallocate(p_, bytes_, alignment_, s_);
  }
  void* data() const { return p_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(Workspace& o) noexcept {
    std::swap(r_, o.r_);
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    std::swap(alignment_, o.alignment_);
    std::swap(s_, o.s_);
  }
  MemoryResource* r_ = nullptr;
  void* p_ = nullptr;
  std::size_t bytes_ = 0, alignment_ = kDefaultAlignment;
  Stream s_;
};

}  // namespace memory
}  // namespace dilated
