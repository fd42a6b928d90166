#include "memory/upstream_registry.hpp"

#include <sstream>

#include "memory/errors.hpp"

namespace dilated {
namespace memory {

namespace {
std::string hex(const void* p) {
  std::ostringstream s;
  s << p;
  return s.str();
}
}  // namespace

void UpstreamRegistry::add(void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  live_.emplace(p, bytes);
  bytes_ += bytes;
  for (void*& r : recent_)
    if (r == p) r = nullptr;  // the address is live again
}

void UpstreamRegistry::remove(const std::string& who, void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(p);
  if (it == live_.end()) {
    for (void* r : recent_)
      if (r == p)
        throw Error(rules::double_free,
                    who + ": deallocate(" + hex(p) + ") - this block was already freed");
    throw Error(rules::foreign_pointer,
                who + ": deallocate(" + hex(p) + ") - not a block this resource allocated");
  }
  if (it->second != bytes)
    throw Error(rules::size_mismatch, who + ": deallocate(" + hex(p) + ", " +
                                          std::to_string(bytes) + " bytes) but the block has " +
                                          std::to_string(it->second) + " bytes");
  bytes_ -= it->second;
  live_.erase(it);
  recent_[recent_next_] = p;
  recent_next_ = (recent_next_ + 1) % kRecent;
}

std::size_t UpstreamRegistry::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}
std::size_t UpstreamRegistry::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_.size();
}

}  // namespace memory
}  // namespace dilated
