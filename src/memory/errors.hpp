// memory/errors.hpp - how the memory layer reports misuse and exhaustion.
//
// Misuse (double free, foreign pointer, zero size, bad alignment, a request
// larger than the resource can ever hold) is a programming error: it throws
// dilated::Error with a "memory.*" rule, like every other validation failure
// of the library. Running out of memory is not a misuse: it throws
// OutOfMemory, a std::bad_alloc that says how much was asked, how much the
// pool held and what was tried before giving up.
#pragma once

#include <new>
#include <string>

#include "dilated/error.hpp"

namespace dilated {
namespace memory {

class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string what) : what_("dilated-attention: " + std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

// Rule ids of the errors thrown by this layer (Error::rule()).
namespace rules {
inline constexpr const char* zero_size = "memory.zero_size";
inline constexpr const char* huge_size = "memory.huge_size";
inline constexpr const char* alignment = "memory.alignment";
inline constexpr const char* double_free = "memory.double_free";
inline constexpr const char* foreign_pointer = "memory.foreign_pointer";
inline constexpr const char* size_mismatch = "memory.size_mismatch";
inline constexpr const char* unsupported = "memory.unsupported";
}  // namespace rules

}  // namespace memory
}  // namespace dilated
