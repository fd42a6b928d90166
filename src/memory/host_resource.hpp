// memory/host_resource.hpp - pageable host memory from the C library.
//
// The plain upstream of host pools (and what NumaHostResource degrades to on
// one NUMA node). Honours alignments up to 1 GiB via posix_memalign.
#pragma once

#include "memory/resource.hpp"
#include "memory/upstream_registry.hpp"

namespace dilated {
namespace memory {

class HostResource final : public MemoryResource {
 public:
  std::string name() const override { return "host"; }
  MemoryKind kind() const override { return MemoryKind::Host; }
  std::size_t max_alignment() const override { return std::size_t(1) << 30; }
  // Physical memory: a request beyond it can never be backed.
  std::size_t max_bytes() const override;
  std::size_t bytes_held() const { return registry_.bytes(); }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream) override;

 private:
  UpstreamRegistry registry_;
};

}  // namespace memory
}  // namespace dilated
