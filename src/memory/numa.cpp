#include "memory/numa.hpp"

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "dilated/dilated_config.hpp"
#include "memory/errors.hpp"
#include "memory/system_memory.hpp"

#if DILATED_ENABLE_HWLOC
#include <hwloc.h>
#if DILATED_ENABLE_CUDA
#include <hwloc/cudart.h>  // header-only helpers over the CUDA runtime
#endif
#endif

namespace dilated {
namespace memory {

namespace {

std::size_t page_size() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

#if DILATED_ENABLE_HWLOC
// The process's topology, loaded once; hwloc allows concurrent read-only use.
struct Hwloc {
  hwloc_topology_t topo = nullptr;
  bool ok = false;
  Hwloc() {
    ok = hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0;
  }
  ~Hwloc() {
    if (topo) hwloc_topology_destroy(topo);
  }
};
Hwloc& hwloc() {
  static Hwloc h;
  return h;
}
// A bitmap freed on scope exit.
struct Bitmap {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  ~Bitmap() { hwloc_bitmap_free(b); }
};
#endif

}  // namespace

const NumaTopology& numa_topology() {
  static const NumaTopology t = [] {
    NumaTopology r;
#if DILATED_ENABLE_HWLOC
    if (hwloc().ok) {
      r.hwloc = true;
      const int n = hwloc_get_nbobjs_by_type(hwloc().topo, HWLOC_OBJ_NUMANODE);
      r.nodes = n > 0 ? n : 1;
      r.summary = "hwloc " + std::string(HWLOC_VERSION) + ": " + std::to_string(r.nodes) +
                  " NUMA node" + (r.nodes > 1 ? "s" : "");
    } else {
      r.summary = "hwloc could not load the topology: NUMA placement off";
    }
#else
    r.summary = "built without hwloc (DILATED_ENABLE_HWLOC=OFF): NUMA placement off";
#endif
    return r;
  }();
  return t;
}

int calling_thread_numa_node() {
#if DILATED_ENABLE_HWLOC
  if (!hwloc().ok) return -1;
  Bitmap cpus, nodes;
  if (hwloc_get_last_cpu_location(hwloc().topo, cpus.b, HWLOC_CPUBIND_THREAD) != 0) return -1;
  hwloc_cpuset_to_nodeset(hwloc().topo, cpus.b, nodes.b);
  return hwloc_bitmap_first(nodes.b);
#else
  return -1;
#endif
}

int numa_node_of_cuda_device(int device) {
#if DILATED_ENABLE_HWLOC && DILATED_ENABLE_CUDA
  if (!hwloc().ok) return -1;
  Bitmap cpus, nodes;
  if (hwloc_cudart_get_device_cpuset(hwloc().topo, device, cpus.b) != 0) return -1;
  hwloc_cpuset_to_nodeset(hwloc().topo, cpus.b, nodes.b);
  return hwloc_bitmap_first(nodes.b);
#else
  (void)device;
  return -1;
#endif
}

NumaHostResource::NumaHostResource(NumaOptions options) : options_(options) {
  const NumaTopology& t = numa_topology();
  if (options_.first_touch) {
    status_ = t.summary + "; first touch: pages land on the node of the thread that first writes them";
  } else if (!t.hwloc) {
    status_ = t.summary + "; plain allocation";
  } else if (t.nodes < 2 && !options_.force_bind) {
    status_ = t.summary + ": nothing to choose, plain allocation";
  } else {
    binds_ = true;
    status_ = t.summary + "; bound with hwloc_alloc_membind to " +
              (options_.node < 0 ? std::string("the calling thread's node")
                                 : "node " + std::to_string(options_.node));
  }
}

std::size_t NumaHostResource::max_alignment() const {
  return binds_ ? page_size() : std::size_t(1) << 30;
}

std::size_t NumaHostResource::max_bytes() const {
  static const std::size_t total = host_system_memory().total;
  return total ? total : ~std::size_t(0) >> 1;
}

void* NumaHostResource::do_allocate(std::size_t bytes, std::size_t alignment, Stream) {
  void* p = nullptr;
#if DILATED_ENABLE_HWLOC
  if (binds_) {
    int node = options_.node >= 0 ? options_.node : calling_thread_numa_node();
    Bitmap nodes;
    if (node >= 0) hwloc_bitmap_only(nodes.b, static_cast<unsigned>(node));
    else hwloc_bitmap_copy(nodes.b, hwloc_topology_get_topology_nodeset(hwloc().topo));
    // mmap-backed: page aligned, which is all max_alignment() promises.
    p = hwloc_alloc_membind(hwloc().topo, bytes, nodes.b, HWLOC_MEMBIND_BIND,
                            HWLOC_MEMBIND_BYNODESET);
    if (!p)
      throw OutOfMemory(name() + ": hwloc_alloc_membind(" + std::to_string(bytes) +
                        " bytes, node " + std::to_string(node) + ") failed");
    registry_.add(p, bytes);
    return p;
  }
#endif
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if (posix_memalign(&p, alignment, bytes) != 0 || !p)
    throw OutOfMemory(name() + ": posix_memalign(" + std::to_string(bytes) + " bytes) failed");
  registry_.add(p, bytes);
  return p;
}

void NumaHostResource::do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) {
  registry_.remove(name(), p, bytes);
#if DILATED_ENABLE_HWLOC
  if (binds_) {
    hwloc_free(hwloc().topo, p, bytes);
    return;
  }
#endif
  std::free(p);
}

std::string PagePlacement::to_string() const {
  std::ostringstream o;
  if (!known) return numa_topology().summary + ": page placement unknown";
  o << sampled << " of " << pages << " pages sampled:";
  for (std::size_t n = 0; n < per_node.size(); ++n)
    if (per_node[n]) o << " node" << n << " " << (100.0 * per_node[n] / sampled) << "%";
  if (not_resident) o << " not yet touched " << (100.0 * not_resident / sampled) << "%";
  return o.str();
}

PagePlacement page_placement(const void* p, std::size_t bytes, std::size_t max_samples) {
  PagePlacement r;
  const std::size_t page = page_size();
  const auto begin = reinterpret_cast<std::uintptr_t>(p) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(p) + bytes;
  r.pages = bytes ? (end - begin + page - 1) / page : 0;
#if DILATED_ENABLE_HWLOC
  if (!hwloc().ok || r.pages == 0) return r;
  r.known = true;
  const std::size_t step = r.pages > max_samples && max_samples ? r.pages / max_samples : 1;
  Bitmap nodes;
  for (std::size_t i = 0; i < r.pages; i += step) {
    const void* addr = reinterpret_cast<const void*>(begin + i * page);
    ++r.sampled;
    if (hwloc_get_area_memlocation(hwloc().topo, addr, page, nodes.b, HWLOC_MEMBIND_BYNODESET) != 0 ||
        hwloc_bitmap_iszero(nodes.b)) {
      ++r.not_resident;
      continue;
    }
    const int n = hwloc_bitmap_first(nodes.b);
    if (static_cast<std::size_t>(n) >= r.per_node.size()) r.per_node.resize(n + 1, 0);
    ++r.per_node[n];
  }
#else
  (void)max_samples;
#endif
  return r;
}

}  // namespace memory
}  // namespace dilated
