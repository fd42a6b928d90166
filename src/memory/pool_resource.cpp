#include "memory/pool_resource.hpp"

#include <algorithm>
#include <sstream>
#include <vector>

#include "memory/errors.hpp"

namespace dilated {
namespace memory {

using details::kGranule;

namespace {
std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }
std::uintptr_t align_up(std::uintptr_t x, std::size_t a) { return (x + a - 1) & ~(std::uintptr_t(a) - 1); }
void raise_peak(std::atomic<std::size_t>& peak, std::size_t value) {
  std::size_t p = peak.load(std::memory_order_relaxed);
  while (value > p && !peak.compare_exchange_weak(p, value, std::memory_order_relaxed)) {
  }
}
std::string hex(const void* p) {
  std::ostringstream s;
  s << p;
  return s.str();
}
constexpr std::size_t kPage = 4096;
constexpr std::size_t kHugePage = std::size_t(2) << 20;
}  // namespace

std::string PoolStats::to_json() const {
  std::ostringstream o;
  o << "{\"reserved\": " << reserved << ", \"peak_reserved\": " << peak_reserved
    << ", \"requested\": " << requested << ", \"peak_requested\": " << peak_requested
    << ", \"in_use\": " << in_use << ", \"live_blocks\": " << live_blocks
    << ", \"free_blocks\": " << free_blocks << ", \"segments\": " << segments
    << ", \"largest_free\": " << largest_free << ", \"allocations\": " << allocations
    << ", \"deallocations\": " << deallocations
    << ", \"upstream_allocations\": " << upstream_allocations
    << ", \"upstream_deallocations\": " << upstream_deallocations
    << ", \"released_segments\": " << released_segments
    << ", \"retries_after_release\": " << retries_after_release
    << ", \"fragmentation\": " << fragmentation()
    << ", \"external_fragmentation\": " << external_fragmentation() << "}";
  return o.str();
}

bool operator==(const PoolStats& a, const PoolStats& b) {
  auto tie = [](const PoolStats& s) {
    return std::make_tuple(s.reserved, s.peak_reserved, s.requested, s.peak_requested, s.in_use,
                           s.live_blocks, s.free_blocks, s.segments, s.largest_free,
                           s.allocations, s.deallocations, s.upstream_allocations,
                           s.upstream_deallocations, s.released_segments,
                           s.retries_after_release);
  };
  return tie(a) == tie(b);
}

PoolResource::PoolResource(MemoryResource& upstream, PoolOptions options)
    : upstream_(upstream),
      options_(std::move(options)),
      // At most 2^62 bytes: no machine has that much, and it keeps the size
      // arithmetic below (granules, alignment padding, segment rounding) far
      // from wrapping for any request that passes the check - an upstream
      // that claims no bound (max_bytes() = SIZE_MAX) once let a request of
      // 2^64 - 2735 bytes round down to a 256-byte segment (fuzz_pool).
      max_bytes_(std::min({upstream_.max_bytes(), options_.policy.hard_limit,
                           std::size_t(1) << 62})) {
  if (options_.small_segment < options_.small_limit)
    throw Error("memory.options", name() + ": small_segment (" +
                                      std::to_string(options_.small_segment) +
                                      ") must hold at least one small_limit request (" +
                                      std::to_string(options_.small_limit) + ")");
  if (options_.large_granularity == 0 || options_.large_granularity % kGranule)
    throw Error("memory.options", name() + ": large_granularity must be a positive multiple of " +
                                      std::to_string(kGranule));
}

PoolResource::~PoolResource() {
  for (LockedArena* a : {&small_, &large_})
    for (auto& seg : a->arena.remove_all_segments())
      upstream_.deallocate(seg->base, seg->upstream_bytes, seg->upstream_alignment, seg->stream);
}


void PoolResource::add_requested(std::size_t bytes) {
  const std::size_t now = requested_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (now > peak_requested_.load(std::memory_order_relaxed)) raise_peak(peak_requested_, now);
}

void* PoolResource::do_allocate(std::size_t bytes, std::size_t alignment, Stream s) {
  LockedArena& a = arena_for(bytes);
  details::Block* b;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    b = a.arena.take(bytes, alignment);
    if (!b && a.arena.flush_quick_lists()) b = a.arena.take(bytes, alignment);
  }
  void* p = b ? reinterpret_cast<void*>(b->addr) : grow_and_take(a, bytes, alignment, s);
  add_requested(bytes);
  return p;
}

std::size_t PoolResource::segment_bytes_for(const LockedArena& a, std::size_t bytes,
                                             std::size_t alignment) const {
  const std::size_t need =
      round_up(bytes, kGranule) + (alignment > kGranule ? alignment - kGranule : 0);
  const std::size_t seg = &a == &small_ ? std::max(options_.small_segment, round_up(need, kPage))
                                         : round_up(need, options_.large_granularity);
  // A fresh segment of at least `oversize` bytes would be an oversize block,
  // which serves only oversize requests (arena.hpp): a request below the
  // threshold must get a segment below it too. (Found by fuzz/fuzz_pool: with
  // the default options a request of 62-64 MiB got a 64 MiB segment that
  // could not serve it - OutOfMemory "internal error".)
  if (need < options_.oversize && seg >= options_.oversize) {
    const std::size_t paged = round_up(need, kPage);
    return paged < options_.oversize ? paged : need;
  }
  return seg;
}

void* PoolResource::upstream_allocate(std::size_t bytes, std::size_t alignment, Stream s) {
  const PressurePolicy& policy = options_.policy;
  // Reserve against the hard limit first (compare-and-swap, so concurrent
  // growers cannot overshoot it together, and no reader ever sees reserved
  // above it, not even for a moment).
  auto within_hard_limit = [&] {
    std::size_t now = reserved_.load(std::memory_order_relaxed);
    do {
      if (bytes > policy.hard_limit || now > policy.hard_limit - bytes) return false;
    } while (!reserved_.compare_exchange_weak(now, now + bytes, std::memory_order_relaxed));
    return true;
  };
  if (reserved_.load(std::memory_order_relaxed) + bytes > policy.soft_limit ||
      policy.system_memory_low())
    release_cached();
  if (!within_hard_limit()) {
    release_cached();
    if (!within_hard_limit())
      throw OutOfMemory(name() + ": " + std::to_string(bytes) + " more bytes would pass the hard "
                        "limit of " + std::to_string(policy.hard_limit) + " (reserved " +
                        std::to_string(reserved_.load()) + " after releasing cached blocks)");
  }
  try {
    try {
      void* p = upstream_.allocate(bytes, alignment, s);
      upstream_allocations_.fetch_add(1, std::memory_order_relaxed);
      raise_peak(peak_reserved_, reserved_.load(std::memory_order_relaxed));
      return p;
    } catch (const OutOfMemory&) {
      if (!policy.retry_after_release) throw;
      retries_.fetch_add(1, std::memory_order_relaxed);
      release_cached();
      void* p = upstream_.allocate(bytes, alignment, s);
      upstream_allocations_.fetch_add(1, std::memory_order_relaxed);
      raise_peak(peak_reserved_, reserved_.load(std::memory_order_relaxed));
      return p;
    }
  } catch (const OutOfMemory& e) {
    reserved_.fetch_sub(bytes, std::memory_order_relaxed);
    throw OutOfMemory(name() + ": growing by " + std::to_string(bytes) +
                      " bytes failed after releasing cached blocks (reserved " +
                      std::to_string(reserved_.load()) + "): " + e.what());
  } catch (...) {
    reserved_.fetch_sub(bytes, std::memory_order_relaxed);
    throw;
  }
}

void* PoolResource::grow_and_take(LockedArena& a, std::size_t bytes, std::size_t alignment,
                                  Stream s) {
  const std::size_t usable = segment_bytes_for(a, bytes, alignment);
  // Ask for page (or huge-page) alignment; an upstream that cannot give even
  // the granule gets asked for a little more, aligned up here.
  const std::size_t want_align = std::min(upstream_.max_alignment(),
                                          usable >= kHugePage ? kHugePage : kPage);
  const std::size_t ask = want_align >= kGranule ? usable : usable + kGranule;
  // A segment the upstream can never give, or one past the hard limit by
  // itself: fail before releasing anything (found by fuzz/fuzz_pool - the
  // upstream's own huge_size error used to escape from here, after the
  // cache had been dropped for nothing).
  if (ask > upstream_.max_bytes())
    throw OutOfMemory(name() + ": " + std::to_string(bytes) + " bytes (alignment " +
                      std::to_string(alignment) + ") need a segment of " + std::to_string(ask) +
                      " bytes, more than " + upstream_.name() + " can ever give (" +
                      std::to_string(upstream_.max_bytes()) + " bytes)");
  if (ask > options_.policy.hard_limit)
    throw OutOfMemory(name() + ": " + std::to_string(bytes) + " bytes (alignment " +
                      std::to_string(alignment) + ") need a segment of " + std::to_string(ask) +
                      " bytes, above the hard limit of " +
                      std::to_string(options_.policy.hard_limit) + " bytes by itself");
  // Wholly free large segments that could not serve this request are
  // returned first (smallest first, as many bytes as the pool is about to
  // grow by): a pool whose requests drift - sequence lengths changing between
  // steps - then keeps reserved memory near what is live instead of caching
  // every size it ever saw. Requests that repeat never get here.
  if (&a == &large_) release_segments_of(large_, ask);
  auto seg = std::make_unique<details::Segment>();
  seg->base = upstream_allocate(ask, want_align, s);
  seg->upstream_bytes = ask;
  seg->upstream_alignment = want_align;
  seg->stream = s;
  seg->begin = align_up(reinterpret_cast<std::uintptr_t>(seg->base), kGranule);
  seg->size = usable;
  std::lock_guard<std::mutex> lock(a.mutex);
  a.arena.add_segment(std::move(seg));
  details::Block* b = a.arena.take(bytes, alignment);  // the new segment fits it
  if (!b) throw OutOfMemory(name() + ": internal error: a fresh segment did not fit its request");
  return reinterpret_cast<void*>(b->addr);
}

void PoolResource::do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  LockedArena& a = arena_for(bytes);
  bool freed_segment_candidate = false;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    if (details::Block* b = a.arena.find_live(addr)) {
      if (b->requested != bytes)
        throw Error(rules::size_mismatch,
                    name() + ": deallocate(" + hex(p) + ", " + std::to_string(bytes) +
                        " bytes) but the block was allocated with " +
                        std::to_string(b->requested) + " bytes");
      a.arena.give_back(b);
      freed_segment_candidate = true;
    }
  }
  if (!freed_segment_candidate) {
    // Not in the arena the size points to: a size mismatch across arenas, or misuse.
    LockedArena& other = &a == &small_ ? large_ : small_;
    std::size_t other_bytes = 0;
    {
      std::lock_guard<std::mutex> lock(other.mutex);
      if (details::Block* b = other.arena.find_live(addr)) other_bytes = b->requested;
    }
    if (other_bytes)
      throw Error(rules::size_mismatch, name() + ": deallocate(" + hex(p) + ", " +
                                            std::to_string(bytes) +
                                            " bytes) but the block was allocated with " +
                                            std::to_string(other_bytes) + " bytes");
    throw_bad_free(p, bytes);
  }
  requested_.fetch_sub(bytes, std::memory_order_relaxed);
  if (reserved_.load(std::memory_order_relaxed) > options_.policy.soft_limit) release_cached();
}

void PoolResource::throw_bad_free(void* p, std::size_t bytes) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  details::Arena::Miss miss = details::Arena::Miss::Foreign;
  for (LockedArena* a : {&small_, &large_}) {
    std::lock_guard<std::mutex> lock(a->mutex);
    const auto m = a->arena.classify(addr);
    if (m != details::Arena::Miss::Foreign) miss = m;
  }
  const std::string call = name() + ": deallocate(" + hex(p) + ", " + std::to_string(bytes) + " bytes)";
  switch (miss) {
    case details::Arena::Miss::InsideFreeBlock:
      throw Error(rules::double_free, call + " - this memory is already free (double free)");
    case details::Arena::Miss::InsideLiveBlock:
      throw Error(rules::foreign_pointer,
                  call + " - points inside a live block, not at its start");
    case details::Arena::Miss::Foreign:
      break;
  }
  throw Error(rules::foreign_pointer, call + " - not memory of this pool (foreign pointer)");
}

std::size_t PoolResource::release_segments_of(LockedArena& a, std::size_t enough) {
  std::vector<std::unique_ptr<details::Segment>> segs;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    segs = a.arena.remove_free_segments(enough);
  }
  std::size_t bytes = 0;
  for (auto& seg : segs) {  // upstream calls without the lock
    upstream_.deallocate(seg->base, seg->upstream_bytes, seg->upstream_alignment, seg->stream);
    reserved_.fetch_sub(seg->upstream_bytes, std::memory_order_relaxed);
    upstream_deallocations_.fetch_add(1, std::memory_order_relaxed);
    released_segments_.fetch_add(1, std::memory_order_relaxed);
    bytes += seg->upstream_bytes;
  }
  return bytes;
}

std::size_t PoolResource::release_cached() {
  return release_segments_of(small_) + release_segments_of(large_);
}

PoolStats PoolResource::stats() const {
  PoolStats s;
  for (const LockedArena* a : {&small_, &large_}) {
    std::lock_guard<std::mutex> lock(a->mutex);
    s.in_use += a->arena.used();
    s.allocations += a->arena.allocations();
    s.deallocations += a->arena.deallocations();
    s.live_blocks += a->arena.live_blocks();
    s.free_blocks += a->arena.free_blocks();
    s.segments += a->arena.segments();
    s.largest_free = std::max(s.largest_free, a->arena.largest_free());
  }
  s.reserved = reserved_.load();
  s.peak_reserved = peak_reserved_.load();
  s.requested = requested_.load();
  s.peak_requested = peak_requested_.load();
  s.upstream_allocations = upstream_allocations_.load();
  s.upstream_deallocations = upstream_deallocations_.load();
  s.released_segments = released_segments_.load();
  s.retries_after_release = retries_.load();
  return s;
}

std::vector<std::pair<void*, std::size_t>> PoolResource::segments() const {
  std::vector<std::pair<void*, std::size_t>> out;
  for (const LockedArena* a : {&small_, &large_}) {
    std::lock_guard<std::mutex> lock(a->mutex);
    for (const auto& r : a->arena.segment_ranges())
      out.emplace_back(reinterpret_cast<void*>(r.first), r.second);
  }
  return out;
}

void PoolResource::reset_peaks() {
  peak_reserved_.store(reserved_.load());
  peak_requested_.store(requested_.load());
}

}  // namespace memory
}  // namespace dilated
