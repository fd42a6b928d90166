#include "memory/resource.hpp"

#include <string>

#include "memory/errors.hpp"

namespace dilated {
namespace memory {

const char* to_string(MemoryKind k) {
  switch (k) {
    case MemoryKind::Host: return "host";
    case MemoryKind::PinnedHost: return "pinned host";
    case MemoryKind::Device: return "device";
  }
  return "?";
}

namespace {
bool is_power_of_two(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }
}  // namespace

void* MemoryResource::allocate(std::size_t bytes, std::size_t alignment, Stream s) {
  if (bytes == 0)
    throw Error(rules::zero_size, name() + ": allocate(0 bytes) - a zero-size request has no "
                                           "valid pointer to return; skip the call");
  if (!is_power_of_two(alignment))
    throw Error(rules::alignment, name() + ": alignment " + std::to_string(alignment) +
                                      " is not a power of two");
  if (alignment > max_alignment())
    throw Error(rules::alignment, name() + ": alignment " + std::to_string(alignment) +
                                      " exceeds the largest supported, " +
                                      std::to_string(max_alignment()));
  if (bytes > max_bytes())
    throw Error(rules::huge_size, name() + ": allocate(" + std::to_string(bytes) +
                                      " bytes) exceeds what this resource can ever hold (" +
                                      std::to_string(max_bytes()) + " bytes)");
  return do_allocate(bytes, alignment, s);
}

void MemoryResource::deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) {
  if (p == nullptr)
    throw Error(rules::foreign_pointer, name() + ": deallocate(nullptr) - this resource never "
                                                 "returns a null pointer");
  if (!is_power_of_two(alignment))
    throw Error(rules::alignment, name() + ": deallocate with alignment " +
                                      std::to_string(alignment) + ", not a power of two");
  do_deallocate(p, bytes, alignment, s);
}

}  // namespace memory
}  // namespace dilated
