// memory/event_log.hpp - an optional record of every allocate and free.
//
// Bounded (a ring of the most recent `capacity` events) so a long-running
// service can leave it on. Its CSV is the trace format the benchmarks replay
// (perf_tests/bench_memory.cpp), so a workload can be recorded and replayed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace dilated {
namespace memory {

struct MemoryEvent {
  std::uint64_t sequence = 0;
  std::uint64_t time_ns = 0;  // since the log was created
  bool allocate = true;       // false: deallocate
  std::uintptr_t address = 0;
  std::size_t bytes = 0, alignment = 0;
  std::uint64_t thread = 0;   // hash of the calling thread's id
};

class EventLog {
 public:
  explicit EventLog(std::size_t capacity = 1 << 16);
  void record(bool allocate, const void* p, std::size_t bytes, std::size_t alignment);
  // Oldest first; at most `capacity` events.
  std::vector<MemoryEvent> events() const;
  std::uint64_t total_recorded() const;
  // "sequence,time_ns,op,address,bytes,alignment,thread" with op = a or f.
  std::string to_csv() const;

 private:
  mutable std::mutex mutex_;
  std::vector<MemoryEvent> ring_;
  std::size_t capacity_;
  std::uint64_t next_ = 0;
  std::uint64_t start_ns_;
};

}  // namespace memory
}  // namespace dilated
