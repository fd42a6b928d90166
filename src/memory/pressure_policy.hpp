// memory/pressure_policy.hpp - when a pool gives cached memory back.
//
// A caching pool trades memory for speed; this says where that trade stops:
//  * soft_limit: above this many reserved bytes, blocks that become wholly
//    free are returned to the upstream at once, and cached segments are
//    released before the pool grows;
//  * hard_limit: reserved bytes never exceed this; a request that would need
//    more fails with OutOfMemory after cached segments were released;
//  * min_available_fraction: when the system's available memory (probe)
//    falls below this fraction of its total, cached segments are released
//    before the pool grows, so other processes keep room;
//  * retry_after_release: an upstream allocation that fails is retried once
//    after everything cached was released (PyTorch does the same before
//    reporting CUDA out of memory).
#pragma once

#include <cstddef>
#include <limits>

#include "memory/system_memory.hpp"

namespace dilated {
namespace memory {

struct PressurePolicy {
  std::size_t soft_limit = std::numeric_limits<std::size_t>::max();
  std::size_t hard_limit = std::numeric_limits<std::size_t>::max();
  double min_available_fraction = 0.0;
  SystemMemoryProbe probe;  // empty: never ask the system
  bool retry_after_release = true;

  bool system_memory_low() const {
    if (min_available_fraction <= 0.0 || !probe) return false;
    const SystemMemory m = probe();
    return m.total > 0 &&
           static_cast<double>(m.available) < min_available_fraction * static_cast<double>(m.total);
  }
};

}  // namespace memory
}  // namespace dilated
