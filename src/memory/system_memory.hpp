// memory/system_memory.hpp - how much memory the machine has, and has free.
//
// The pressure policy asks this before a pool grows: a pool that caches
// gigabytes while the machine runs out hurts every other process.
#pragma once

#include <cstddef>
#include <functional>

namespace dilated {
namespace memory {

struct SystemMemory {
  std::size_t total = 0;      // bytes; 0 when unknown
  std::size_t available = 0;  // bytes that can be allocated without swapping
};

// Linux: MemTotal / MemAvailable of /proc/meminfo (falls back to sysconf).
SystemMemory host_system_memory();

using SystemMemoryProbe = std::function<SystemMemory()>;

}  // namespace memory
}  // namespace dilated
