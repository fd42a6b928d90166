#include "memory/tracking_resource.hpp"

#include <cstdio>
#include <sstream>

#include "memory/pool_resource.hpp"

namespace dilated {
namespace memory {

std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

TrackingResource::TrackingResource(MemoryResource& upstream, TrackingOptions options)
    : upstream_(upstream), pool_(dynamic_cast<const PoolResource*>(&upstream)) {
  if (options.event_log) log_ = std::make_unique<EventLog>(options.event_log_capacity);
}

void* TrackingResource::do_allocate(std::size_t bytes, std::size_t alignment, Stream s) {
  void* p = upstream_.allocate(bytes, alignment, s);
  const std::size_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::size_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  allocations_.fetch_add(1, std::memory_order_relaxed);
  const int k = size_bucket(bytes);
  histogram_[k].fetch_add(1, std::memory_order_relaxed);
  live_[k].fetch_add(1, std::memory_order_relaxed);
  if (log_) log_->record(true, p, bytes, alignment);
  return p;
}

void TrackingResource::do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) {
  upstream_.deallocate(p, bytes, alignment, s);  // throws on misuse: nothing counted
  current_.fetch_sub(bytes, std::memory_order_relaxed);
  deallocations_.fetch_add(1, std::memory_order_relaxed);
  live_[size_bucket(bytes)].fetch_sub(1, std::memory_order_relaxed);
  if (log_) log_->record(false, p, bytes, alignment);
}

TrackingStats TrackingResource::stats() const {
  TrackingStats s;
  s.current = current_.load();
  s.peak = peak_.load();
  s.allocations = allocations_.load();
  s.deallocations = deallocations_.load();
  for (int k = 0; k < kSizeBuckets; ++k) {
    s.histogram[k] = histogram_[k].load();
    s.live[k] = static_cast<std::uint64_t>(live_[k].load());
  }
  return s;
}

double TrackingResource::fragmentation() const {
  if (!pool_) return 1.0;
  const std::size_t peak = peak_.load();
  return peak ? static_cast<double>(pool_->stats().peak_reserved) / peak : 1.0;
}

void TrackingResource::reset_peak() { peak_.store(current_.load()); }

std::string TrackingResource::to_json() const {
  const TrackingStats s = stats();
  std::ostringstream o;
  o << "{\"resource\": \"" << name() << "\", \"current\": " << s.current << ", \"peak\": " << s.peak
    << ", \"allocations\": " << s.allocations << ", \"deallocations\": " << s.deallocations
    << ", \"fragmentation\": " << fragmentation() << ", \"histogram\": [";
  bool first = true;
  for (int k = 0; k < kSizeBuckets; ++k) {
    if (!s.histogram[k]) continue;
    o << (first ? "" : ", ") << "{\"bucket_bytes\": " << bucket_floor(k)
      << ", \"allocations\": " << s.histogram[k] << ", \"live\": " << s.live[k] << "}";
    first = false;
  }
  o << "]";
  if (pool_) o << ", \"pool\": " << pool_->stats().to_json();
  if (log_) o << ", \"events_recorded\": " << log_->total_recorded();
  o << "}";
  return o.str();
}

}  // namespace memory
}  // namespace dilated
