#include "memory/system_memory.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace dilated {
namespace memory {

SystemMemory host_system_memory() {
  SystemMemory m;
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      unsigned long long kb = 0;
      if (std::sscanf(line, "MemTotal: %llu kB", &kb) == 1) m.total = kb * 1024ull;
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) m.available = kb * 1024ull;
    }
    std::fclose(f);
  }
  if (m.total == 0) {
    const long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    const long page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) m.total = static_cast<std::size_t>(pages) * page;
    if (avail > 0 && page > 0) m.available = static_cast<std::size_t>(avail) * page;
  }
  return m;
}

}  // namespace memory
}  // namespace dilated
