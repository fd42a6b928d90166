#include "memory/host_resource.hpp"

#include <cstdlib>

#include "memory/errors.hpp"
#include "memory/system_memory.hpp"

namespace dilated {
namespace memory {

std::size_t HostResource::max_bytes() const {
  static const std::size_t total = host_system_memory().total;
  return total ? total : ~std::size_t(0) >> 1;
}

void* HostResource::do_allocate(std::size_t bytes, std::size_t alignment, Stream) {
  void* p = nullptr;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if (posix_memalign(&p, alignment, bytes) != 0 || p == nullptr)
    throw OutOfMemory("host: posix_memalign(" + std::to_string(bytes) + " bytes) failed");
  registry_.add(p, bytes);
  return p;
}

void HostResource::do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) {
  registry_.remove(name(), p, bytes);
  std::free(p);
}

}  // namespace memory
}  // namespace dilated
