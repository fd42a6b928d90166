// memory/kokkos_workspace.hpp - the memory layer meets Kokkos (stable API only).
//
//  * KokkosSpaceResource<Space>: any Kokkos memory space as an upstream
//    (Space().allocate / deallocate), so device spaces get pools without
//    backend-specific code;
//  * workspace_stack<Space>(): the process-wide workspace stack of a memory
//    space (host: NUMA upstream, see workspace.hpp; others: a pool over the
//    Kokkos space, emptied by a Kokkos finalize hook so no Kokkos call
//    happens after Kokkos::finalize);
//  * stream_of(space): the stream handle of an execution-space instance;
//  * PooledView: an unmanaged View over a pool block that returns the block
//    when it goes out of scope (workspaces of kernels: delta, exchange buffers);
//  * touch_pages(space, p, bytes): first touch by the threads of `space`, so
//    first-touch placement puts each page on its owning thread's node.
#pragma once

#include <Kokkos_Core.hpp>
#include <type_traits>

#include "memory/pool_resource.hpp"
#include "memory/system_memory.hpp"
#include "memory/tracking_resource.hpp"
#include "memory/upstream_registry.hpp"
#include "memory/workspace.hpp"

namespace dilated {
namespace memory {

template <class MemorySpace>
class KokkosSpaceResource final : public MemoryResource {
  static constexpr bool host_accessible =
      Kokkos::SpaceAccessibility<Kokkos::HostSpace, MemorySpace>::accessible;

 public:
  std::string name() const override { return std::string("kokkos-") + MemorySpace::name(); }
  MemoryKind kind() const override { return host_accessible ? MemoryKind::Host : MemoryKind::Device; }
  // What every Kokkos space guarantees; pools align further themselves.
  std::size_t max_alignment() const override { return 64; }
  std::size_t max_bytes() const override {
    const std::size_t total = host_accessible ? host_system_memory().total : 0;
    return total ? total : ~std::size_t(0) >> 1;
  }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t, Stream) override {
    void* p = MemorySpace().allocate(bytes);  // throws Kokkos' exception on failure
    registry_.add(p, bytes);
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) override {
    registry_.remove(name(), p, bytes);
    MemorySpace().deallocate(p, bytes);
  }

 private:
  UpstreamRegistry registry_;
};

template <class MemorySpace>
WorkspaceStack& workspace_stack() {
  if constexpr (std::is_same<MemorySpace, Kokkos::HostSpace>::value) {
    return host_workspace_stack();
  } else {
    struct Stack {
      KokkosSpaceResource<MemorySpace> upstream;
      PoolResource pool;
      TrackingResource tracking;
      WorkspaceStack view;
      static PoolOptions options() {
        PoolOptions o;
        o.name = std::string("workspace-") + MemorySpace::name();
        return o;
      }
      Stack() : pool(upstream, options()), tracking(pool) {
        view.upstream = &upstream;
        view.pool = &pool;
        view.tracking = &tracking;
        view.placement = std::string("Kokkos ") + MemorySpace::name();
        // Workspaces are all returned by then (plans fence before returning);
        // without this the pool's destructor would free after Kokkos::finalize.
        PoolResource* p = &pool;
        Kokkos::push_finalize_hook([p] { p->release_cached(); });
      }
    };
    static Stack stack;
    return stack.view;
  }
}

template <class ExecSpace>
Stream stream_of(const ExecSpace&) {
  return {};
}
#if defined(KOKKOS_ENABLE_CUDA)
inline Stream stream_of(const Kokkos::Cuda& space) {
  return {static_cast<void*>(space.cuda_stream())};
}
#endif

// A View of `DataType` (e.g. float***) over a block of `resource`, which
// goes back to the resource when the PooledView is destroyed. Make sure the
// kernels using it have finished by then (fence the instance), as for any
// stream-unordered pool.
template <class DataType, class Layout, class MemorySpace>
struct PooledView {
  using view_type = Kokkos::View<DataType, Layout, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using value_type = typename view_type::value_type;
  Workspace block;
  view_type view;
};

template <class DataType, class Layout = Kokkos::LayoutRight, class ExecSpace, class... Extents>
PooledView<DataType, Layout, typename ExecSpace::memory_space> pooled_view(const ExecSpace& space,
                                                                           MemoryResource& resource,
                                                                           Extents... extents) {
  using P = PooledView<DataType, Layout, typename ExecSpace::memory_space>;
  std::size_t elements = 1;
  for (std::size_t e : {static_cast<std::size_t>(extents)...}) elements *= e;
  P p;
  p.block = Workspace(resource, elements * sizeof(typename P::value_type), kDefaultAlignment,
                      stream_of(space));
  p.view = typename P::view_type(static_cast<typename P::value_type*>(p.block.data()),
                                 static_cast<std::size_t>(extents)...);
  return p;
}

// Writes one byte per page from the threads of a host execution space, so
// pages of an unbound (first-touch) allocation land on the NUMA node of the
// threads that will use them. Asynchronous on `space` like any parallel_for.
template <class ExecSpace>
void touch_pages(const ExecSpace& space, void* p, std::size_t bytes, std::size_t page = 4096) {
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, Kokkos::HostSpace>::accessible,
                "touch_pages: first touch is a host notion");
  char* base = static_cast<char*>(p);
  const std::size_t pages = (bytes + page - 1) / page;
  Kokkos::parallel_for(
      "dilated::memory::touch_pages", Kokkos::RangePolicy<ExecSpace>(space, 0, pages),
      KOKKOS_LAMBDA(const std::size_t i) { base[i * page] = 0; });
}

}  // namespace memory
}  // namespace dilated
