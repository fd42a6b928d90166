// memory/numa.hpp - NUMA-placed host memory (hwloc) and where pages landed.
//
// On a multi-socket host a workspace touched by threads of one socket but
// placed on the other costs a remote access per cache miss. NumaHostResource
// binds each allocation to a NUMA node with hwloc_alloc_membind: by default
// the node of the calling thread (the thread that will own the workspace), or
// a named node (e.g. the one next to a GPU). With `first_touch` it binds
// nothing and leaves placement to the threads that first write each page
// (touch_pages() in kokkos_workspace.hpp does that on an execution space).
//
// Degrades cleanly: built without hwloc (DILATED_ENABLE_HWLOC=OFF) or on a
// machine where hwloc finds one node, it allocates plainly and status() says
// why. page_placement() reports where the pages of a range actually are.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "memory/resource.hpp"
#include "memory/upstream_registry.hpp"

namespace dilated {
namespace memory {

struct NumaTopology {
  bool hwloc = false;  // built with hwloc and it loaded the topology
  int nodes = 1;       // NUMA nodes hwloc sees (1 when unknown)
  std::string summary;
};
// Loaded once per process.
const NumaTopology& numa_topology();
// OS index of the NUMA node the calling thread last ran on, -1 when unknown.
int calling_thread_numa_node();
// OS index of the NUMA node nearest to CUDA device `device` (for its pinned
// staging buffers: NumaOptions{numa_node_of_cuda_device(d)}); -1 when unknown
// or when built without CUDA or hwloc.
int numa_node_of_cuda_device(int device);

struct NumaOptions {
  int node = -1;             // -1: the calling thread's node at each allocation
  bool first_touch = false;  // bind nothing: pages land where first written
  bool force_bind = false;   // bind even on a one-node machine (tests the hwloc path)
};

class NumaHostResource final : public MemoryResource {
 public:
  explicit NumaHostResource(NumaOptions options = {});
  std::string name() const override { return "numa-host"; }
  MemoryKind kind() const override { return MemoryKind::Host; }
  std::size_t max_alignment() const override;  // the page size when binding
  std::size_t max_bytes() const override;
  // Whether allocations are bound through hwloc, and a sentence saying how
  // memory is placed (printed by the demo's memory report).
  bool binds() const { return binds_; }
  const std::string& status() const { return status_; }
  std::size_t bytes_held() const { return registry_.bytes(); }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream) override;

 private:
  NumaOptions options_;
  bool binds_ = false;
  std::string status_;
  UpstreamRegistry registry_;
};

struct PagePlacement {
  std::size_t pages = 0;         // pages in the range
  std::size_t sampled = 0;       // pages asked about
  std::size_t not_resident = 0;  // sampled pages not yet backed (never touched)
  std::vector<std::size_t> per_node;  // sampled pages per NUMA node (OS index)
  bool known = false;            // false without hwloc
  std::string to_string() const;  // "node0: 100% of 512 sampled pages" or why unknown
};
PagePlacement page_placement(const void* p, std::size_t bytes, std::size_t max_samples = 1024);

}  // namespace memory
}  // namespace dilated
