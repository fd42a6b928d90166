// memory/tracking_resource.hpp - statistics of what passes through a resource.
//
// Wraps any resource (typically a pool) and counts what callers asked for:
// current and peak bytes, allocations and frees, a size histogram and live
// blocks per size bucket; with a pool underneath, the fragmentation ratio
// peak reserved / peak requested. Counting is lock-free (relaxed atomics), so
// the adaptor adds a few nanoseconds, not a lock. A free is counted only
// after the wrapped resource accepted it, so a rejected double free leaves
// the statistics unchanged too. An EventLog can be attached.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "memory/event_log.hpp"
#include "memory/resource.hpp"
#include "memory/size_histogram.hpp"

namespace dilated {
namespace memory {

class PoolResource;

struct TrackingOptions {
  bool event_log = false;
  std::size_t event_log_capacity = 1 << 16;
};

struct TrackingStats {
  std::size_t current = 0, peak = 0;
  std::uint64_t allocations = 0, deallocations = 0;
  std::array<std::uint64_t, kSizeBuckets> histogram{};  // allocations per size bucket
  std::array<std::uint64_t, kSizeBuckets> live{};       // live blocks per size bucket
};

class TrackingResource final : public MemoryResource {
 public:
  explicit TrackingResource(MemoryResource& upstream, TrackingOptions options = {});

  std::string name() const override { return "tracking(" + upstream_.name() + ")"; }
  MemoryKind kind() const override { return upstream_.kind(); }
  std::size_t max_alignment() const override { return upstream_.max_alignment(); }
  std::size_t max_bytes() const override { return upstream_.max_bytes(); }

  TrackingStats stats() const;
  // Peak reserved of the pool underneath / peak requested here (1 when the
  // upstream is not a pool).
  double fragmentation() const;
  void reset_peak();
  const EventLog* event_log() const { return log_.get(); }
  MemoryResource& upstream() const { return upstream_; }
  // {"current": .., "peak": .., "histogram": [{"bucket_bytes": .., "allocations": .., "live": ..}],
  //  "fragmentation": .., "pool": {...}} - the pool part when there is one.
  std::string to_json() const;

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override;

 private:
  MemoryResource& upstream_;
  const PoolResource* pool_;  // upstream as a pool, or null
  std::unique_ptr<EventLog> log_;
  std::atomic<std::size_t> current_{0}, peak_{0};
  std::atomic<std::uint64_t> allocations_{0}, deallocations_{0};
  std::array<std::atomic<std::uint64_t>, kSizeBuckets> histogram_{};
  std::array<std::atomic<std::int64_t>, kSizeBuckets> live_{};
};

}  // namespace memory
}  // namespace dilated
