// memory/upstream_registry.hpp - the live-allocation book every upstream keeps.
//
// Upstreams (host, NUMA, pinned, CUDA) are called rarely - a pool asks them for
// segments of megabytes - so each can afford a locked map of what it handed
// out. That buys the same misuse checks as the pool (double free, foreign
// pointer, size mismatch) at every level of a stack, and a count of the bytes
// an upstream holds. The lock is taken only around the map, never around the
// system call that allocates or frees (those can block for milliseconds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace dilated {
namespace memory {

class UpstreamRegistry {
 public:
  // Records a new block; called after the system allocation succeeded.
  void add(void* p, std::size_t bytes);
  // Checks that p is a live block of `bytes` and forgets it; throws
  // dilated::Error naming `who` (and changes nothing) otherwise. Called before
  // the system free.
  void remove(const std::string& who, void* p, std::size_t bytes);
  std::size_t bytes() const;
  std::size_t count() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<void*, std::size_t> live_;
  std::size_t bytes_ = 0;
  // The last few freed addresses, so a second free of one is reported as a
  // double free rather than as a pointer from elsewhere.
  static constexpr int kRecent = 64;
  void* recent_[kRecent] = {};
  int recent_next_ = 0;
};

}  // namespace memory
}  // namespace dilated
