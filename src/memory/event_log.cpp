#include "memory/event_log.hpp"

#include <chrono>
#include <functional>
#include <sstream>
#include <thread>

namespace dilated {
namespace memory {

namespace {
std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}
}  // namespace

EventLog::EventLog(std::size_t capacity) : capacity_(capacity ? capacity : 1), start_ns_(now_ns()) {
  ring_.reserve(capacity_);
}

void EventLog::record(bool allocate, const void* p, std::size_t bytes, std::size_t alignment) {
  MemoryEvent e;
  e.time_ns = now_ns() - start_ns_;
  e.allocate = allocate;
  e.address = reinterpret_cast<std::uintptr_t>(p);
  e.bytes = bytes;
  e.alignment = alignment;
  e.thread = std::hash<std::thread::id>()(std::this_thread::get_id());
  std::lock_guard<std::mutex> lock(mutex_);
  e.sequence = next_;
  if (ring_.size() < capacity_) ring_.push_back(e);
  else ring_[next_ % capacity_] = e;
  ++next_;
}

std::vector<MemoryEvent> EventLog::events() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ring_.size() < capacity_) return ring_;
  std::vector<MemoryEvent> out;
  out.reserve(capacity_);
  for (std::size_t i = 0; i < capacity_; ++i) out.push_back(ring_[(next_ + i) % capacity_]);
  return out;
}

std::uint64_t EventLog::total_recorded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_;
}

std::string EventLog::to_csv() const {
  std::ostringstream o;
  o << "sequence,time_ns,op,address,bytes,alignment,thread\n";
  for (const MemoryEvent& e : events())
    o << e.sequence << ',' << e.time_ns << ',' << (e.allocate ? 'a' : 'f') << ",0x" << std::hex
      << e.address << std::dec << ',' << e.bytes << ',' << e.alignment << ',' << e.thread << '\n';
  return o.str();
}

}  // namespace memory
}  // namespace dilated
