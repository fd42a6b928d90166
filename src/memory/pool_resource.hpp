// memory/pool_resource.hpp - a thread-safe caching pool over any upstream.
//
// Two arenas, as in PyTorch's caching allocator: requests up to
// `small_limit` are carved from small segments, larger ones from segments
// sized to the request, so a few long-lived small blocks never pin a large
// segment. Each arena is a TLSF bin structure (arena.hpp) with splitting and
// coalescing; freed memory stays cached for the next request until the
// pressure policy (pressure_policy.hpp) or release_cached() returns it.
//
// Thread safety: one mutex per arena, held only for bookkeeping. Upstream
// calls (which can block: mmap, cudaMallocAsync) run with no lock held.
// Streams: the pool does not order reuse across streams; a caller that frees
// a block still in use on a stream must synchronise that stream first (the
// attention Plan fences its instance before its workspace is returned).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "memory/arena.hpp"
#include "memory/pressure_policy.hpp"
#include "memory/resource.hpp"

namespace dilated {
namespace memory {

struct PoolOptions {
  std::string name = "pool";
  std::size_t small_limit = std::size_t(1) << 20;       // requests <= this: small arena
  std::size_t small_segment = std::size_t(2) << 20;     // small arena grows by this
  std::size_t large_granularity = std::size_t(2) << 20;  // large segments are multiples
  // Blocks of at least `oversize` bytes serve only requests of at least that
  // size (see arena.hpp).
  std::size_t oversize = std::size_t(64) << 20;
  PressurePolicy policy;
};

// A snapshot of the pool's books; equal snapshots mean an unchanged pool.
struct PoolStats {
  std::size_t reserved = 0, peak_reserved = 0;    // bytes obtained from the upstream
  std::size_t requested = 0, peak_requested = 0;  // live bytes callers asked for
  std::size_t in_use = 0;                         // bytes of live blocks (rounded)
  std::size_t live_blocks = 0, free_blocks = 0, segments = 0;
  std::size_t largest_free = 0;
  std::uint64_t allocations = 0, deallocations = 0;
  std::uint64_t upstream_allocations = 0, upstream_deallocations = 0;
  std::uint64_t released_segments = 0, retries_after_release = 0;

  // Peak reserved / peak requested: the memory cost of pooling (1 is ideal).
  double fragmentation() const {
    return peak_requested ? static_cast<double>(peak_reserved) / peak_requested : 1.0;
  }
  // 1 - largest free block / free bytes: how scattered the cached memory is.
  double external_fragmentation() const {
    const std::size_t f = reserved - in_use;
    return f ? 1.0 - static_cast<double>(largest_free) / f : 0.0;
  }
  std::string to_json() const;
  friend bool operator==(const PoolStats& a, const PoolStats& b);
  friend bool operator!=(const PoolStats& a, const PoolStats& b) { return !(a == b); }
};

class PoolResource final : public MemoryResource {
 public:
  explicit PoolResource(MemoryResource& upstream, PoolOptions options = {});
  // Returns every segment to the upstream (live blocks included: a pool
  // outlives its allocations, as with RMM's pool_memory_resource).
  ~PoolResource() override;

  std::string name() const override { return options_.name; }
  MemoryKind kind() const override { return upstream_.kind(); }
  std::size_t max_alignment() const override { return std::size_t(2) << 20; }
  // min(upstream's max_bytes(), hard limit, 2^62). A request up to it may
  // still fail with OutOfMemory when the segment it needs (rounded to the
  // granularity, plus alignment padding) is more than the upstream can give
  // or than the hard limit allows - before any cached memory is released.
  std::size_t max_bytes() const override { return max_bytes_; }

  // Returns wholly free segments to the upstream; the bytes returned.
  std::size_t release_cached();
  PoolStats stats() const;
  // (address, bytes) of the segments the pool holds, for placement reports.
  std::vector<std::pair<void*, std::size_t>> segments() const;
  void reset_peaks();
  MemoryResource& upstream() const { return upstream_; }
  const PoolOptions& options() const { return options_; }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override;

 private:
  struct LockedArena {
    explicit LockedArena(const PoolOptions& o) : arena(o.oversize) {}
    mutable std::mutex mutex;
    details::Arena arena;
  };
  LockedArena& arena_for(std::size_t bytes) { return bytes <= options_.small_limit ? small_ : large_; }
  void* grow_and_take(LockedArena& a, std::size_t bytes, std::size_t alignment, Stream s);
  void* upstream_allocate(std::size_t bytes, std::size_t alignment, Stream s);
  std::size_t segment_bytes_for(const LockedArena& a, std::size_t bytes, std::size_t alignment) const;
  std::size_t release_segments_of(LockedArena& a, std::size_t enough = ~std::size_t(0));
  [[noreturn]] void throw_bad_free(void* p, std::size_t bytes);
  void add_requested(std::size_t bytes);

  MemoryResource& upstream_;
  PoolOptions options_;
  std::size_t max_bytes_;  // cached: checked on every allocation
  LockedArena small_{options_}, large_{options_};
  std::atomic<std::size_t> reserved_{0}, peak_reserved_{0};
  std::atomic<std::size_t> requested_{0}, peak_requested_{0};
  std::atomic<std::uint64_t> upstream_allocations_{0}, upstream_deallocations_{0};
  std::atomic<std::uint64_t> released_segments_{0}, retries_{0};
};

}  // namespace memory
}  // namespace dilated
