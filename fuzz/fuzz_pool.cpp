// libFuzzer target over pool requests (issue 8): an input decodes into pool
// options, a pressure policy and an upstream, then a sequence of operations -
// allocate (any size and alignment, through the TLSF pool or the tracking
// adaptor over it), free (right, or wrong in every way: double, foreign,
// interior, wrong size, null, bad alignment), upstream capacity and system
// memory changes, release_cached, peak resets. After every step:
//   * live blocks never overlap, lie inside the pool's segments, start and
//     end on the 256-byte granule and honour their alignment;
//   * the pool's statistics agree with a model of the live blocks (requested
//     bytes, live blocks, allocation counts) and with the upstream's own book
//     (reserved bytes, segments); reserved never passes the hard limit;
//   * the tracking adaptor's current bytes, counts and live-size buckets agree
//     with the blocks allocated through it;
//   * a bad request throws dilated::Error with the rule it breaks and changes
//     nothing (pool, adaptor and upstream statistics equal before and after);
//   * OutOfMemory only when the upstream refused or the hard limit binds,
//     and it leaves the live blocks alone;
//   * above the soft limit, a free leaves no wholly free segment cached.
// At the end every block is freed and release_cached() returns every segment:
// the upstream holds nothing.
//
// The upstream hands out address ranges it never backs (the pool keeps its
// books out of band and must never touch the memory - the same property that
// lets it manage device memory), aligned exactly as asked and no more, so
// sizes up to terabytes cost nothing and a pool that dereferenced its blocks
// would crash here. Built by the `fuzz` preset (ASan + UBSan); run by
// scripts/run-tests.sh.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dilated/error.hpp"
#include "memory/errors.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

namespace {

using namespace dilated::memory;
constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kGranule = 256;
constexpr std::size_t kPoolMaxAlignment = std::size_t(2) << 20;

long inputs = 0, rejected_options = 0, operations = 0, allocations = 0, bad_requests = 0,
     out_of_memory = 0, frees = 0;
struct Totals {
  ~Totals() {
    std::fprintf(stderr,
                 "fuzz_pool totals: %ld inputs (%ld with rejected options), %ld operations: %ld "
                 "allocations, %ld frees, %ld bad requests rejected, %ld out of memory\n",
                 inputs, rejected_options, operations, allocations, frees, bad_requests,
                 out_of_memory);
  }
} totals;

std::string last_op;
[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_pool: %s\n  during: %s\n", what.c_str(), last_op.c_str());
  std::abort();
}
#define CHECK(cond, msg)                                                     \
  do {                                                                       \
    if (!(cond)) fail(std::string("check failed: " #cond " - ") + (msg)); \
  } while (0)

std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }
bool pow2(std::size_t x) { return x && !(x & (x - 1)); }
// a + b without wrapping.
std::size_t sat_add(std::size_t a, std::size_t b) { return a > kMax - b ? kMax : a + b; }

// An upstream of address ranges, never backed by memory. Each block is
// aligned to exactly the alignment asked (never by accident to more); it
// refuses (OutOfMemory) past `capacity` bytes live, and aborts on any free
// that does not match what it handed out.
class FakeUpstream final : public MemoryResource {
 public:
  FakeUpstream(std::size_t max_alignment, std::size_t max_bytes)
      : max_alignment_(max_alignment), max_bytes_(max_bytes) {}
  std::string name() const override { return "fake-upstream"; }
  MemoryKind kind() const override { return MemoryKind::Device; }
  std::size_t max_alignment() const override { return max_alignment_; }
  std::size_t max_bytes() const override { return max_bytes_; }

  std::size_t capacity = kMax;
  std::size_t total = 0, available = 0;  // what the pool's probe sees
  std::size_t live_bytes = 0, refusals = 0;
  std::map<std::uintptr_t, std::pair<std::size_t, std::size_t>> live;  // addr -> (bytes, align)
  bool operator==(const FakeUpstream& o) const = delete;
  std::string book() const {
    return std::to_string(live.size()) + "/" + std::to_string(live_bytes) + "/" +
           std::to_string(refusals);
  }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream) override {
    if (bytes > capacity || live_bytes > capacity - bytes) {
      ++refusals;
      throw OutOfMemory("fake upstream: capacity " + std::to_string(capacity) + " reached");
    }
    // Exactly `alignment`-aligned: an odd multiple of it.
    const std::uintptr_t a = alignment;
    std::uintptr_t p = (next_ + 2 * a - 1) / (2 * a) * (2 * a) + a;
    if (p < next_ || p > (std::uintptr_t(1) << 62) || bytes > (std::uintptr_t(1) << 62)) {
      ++refusals;  // address space of this fake exhausted
      throw OutOfMemory("fake upstream: address space exhausted");
    }
    next_ = p + bytes;
    live[p] = {bytes, alignment};
    live_bytes += bytes;
    return reinterpret_cast<void*>(p);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream) override {
    auto it = live.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == live.end()) fail("the pool returned a segment the upstream never gave");
    if (it->second.first != bytes || it->second.second != alignment)
      fail("the pool returned a segment with another size or alignment than it asked");
    live_bytes -= bytes;
    live.erase(it);
  }

 private:
  std::size_t max_alignment_, max_bytes_;
  // Above x86-64's user address space: no real object (the bad frees use
  // some) can fall inside a segment.
  std::uintptr_t next_ = std::uintptr_t(1) << 47;
};

struct LiveBlock {
  std::uintptr_t p;
  std::size_t bytes, alignment;
  bool tracked;  // allocated through the adaptor (freed through it too)
};

std::size_t pick_size(FuzzedDataProvider& in, std::size_t max_bytes) {
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return 0;
    case 1: return in.ConsumeIntegralInRange<std::size_t>(1, 256);
    case 2: return in.ConsumeIntegralInRange<std::size_t>(257, 64 << 10);
    case 3: return in.ConsumeIntegralInRange<std::size_t>(1, (1 << 20) + 4096);
    case 4: return in.ConsumeIntegralInRange<std::size_t>(1, std::size_t(128) << 20);
    case 5: return in.ConsumeIntegralInRange<std::size_t>(1, std::size_t(4) << 30);
    case 6: {  // around the largest request the pool accepts
      const std::size_t d = in.ConsumeIntegralInRange<std::size_t>(0, 4096);
      return in.ConsumeBool() ? sat_add(max_bytes, d) : (max_bytes > d ? max_bytes - d : 1);
    }
    case 7: return in.ConsumeIntegral<std::size_t>();
    default: return in.ConsumeIntegralInRange<std::size_t>(1, 4 << 20);
  }
}
std::size_t pick_alignment(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return 0;
    case 1: return in.ConsumeIntegral<std::size_t>();  // mostly not a power of two
    case 2: return std::size_t(1) << in.ConsumeIntegralInRange<int>(0, 63);
    default: return std::size_t(1) << in.ConsumeIntegralInRange<int>(0, 22);  // 1 B .. 4 MiB
  }
}

// Snapshot of everything a rejected request must leave alone.
struct Books {
  PoolStats pool;
  TrackingStats tracked;
  std::string upstream;
  std::uint64_t log_recorded;
  bool operator==(const Books& o) const {
    return pool == o.pool && tracked.current == o.tracked.current &&
           tracked.peak == o.tracked.peak && tracked.allocations == o.tracked.allocations &&
           tracked.deallocations == o.tracked.deallocations &&
           tracked.histogram == o.tracked.histogram && tracked.live == o.tracked.live &&
           upstream == o.upstream && log_recorded == o.log_recorded;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  ++inputs;
  last_op = "setup";
  const std::size_t up_align_choices[] = {16, 64, 256, 4096, std::size_t(2) << 20,
                                          std::size_t(1) << 30};
  const std::size_t up_align = in.PickValueInArray(up_align_choices);
  std::size_t up_max = std::size_t(1) << 40;
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 1: up_max = in.ConsumeIntegralInRange<std::size_t>(1, std::size_t(1) << 40); break;
    case 2: up_max = kMax; break;  // an upstream that claims no bound
    default: break;
  }
  FakeUpstream up(up_align, up_max);
  if (in.ConsumeBool()) up.capacity = in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(1) << 34);
  up.total = std::size_t(64) << 30;
  up.available = up.total;

  PoolOptions o;
  if (in.ConsumeBool()) o.small_limit = in.ConsumeIntegralInRange<std::size_t>(0, 4 << 20);
  if (in.ConsumeBool()) o.small_segment = in.ConsumeIntegralInRange<std::size_t>(0, 8 << 20);
  if (in.ConsumeBool())
    o.large_granularity = in.ConsumeBool() ? std::size_t(1) << in.ConsumeIntegralInRange<int>(0, 24)
                                           : in.ConsumeIntegralInRange<std::size_t>(0, 8 << 20);
  if (in.ConsumeBool()) o.oversize = in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(1) << 30);
  if (in.ConsumeBool()) o.policy.hard_limit = in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(1) << 36);
  if (in.ConsumeBool()) o.policy.soft_limit = in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(1) << 34);
  if (in.ConsumeBool()) {
    o.policy.min_available_fraction = in.ConsumeProbability<double>();
    o.policy.probe = [&up] { return SystemMemory{up.total, up.available}; };
  }
  o.policy.retry_after_release = in.ConsumeBool();
  const std::size_t hard = o.policy.hard_limit, soft = o.policy.soft_limit;
  const bool options_bad = o.small_segment < o.small_limit || o.large_granularity == 0 ||
                           o.large_granularity % kGranule != 0;
  last_op = "construct pool: small_limit " + std::to_string(o.small_limit) + ", small_segment " +
            std::to_string(o.small_segment) + ", large_granularity " +
            std::to_string(o.large_granularity) + ", oversize " + std::to_string(o.oversize) +
            ", hard " + std::to_string(hard) + ", soft " + std::to_string(soft) +
            ", upstream align " + std::to_string(up_align) + " max " + std::to_string(up_max);
  std::unique_ptr<PoolResource> pool_ptr;
  try {
    pool_ptr = std::make_unique<PoolResource>(up, o);
  } catch (const dilated::Error& e) {
    CHECK(options_bad, std::string("valid options rejected: ") + e.what());
    CHECK(std::string(e.rule()) == "memory.options", e.rule());
    CHECK(up.live.empty() && up.refusals == 0, "a rejected pool touched its upstream");
    ++rejected_options;
    return 0;
  }
  CHECK(!options_bad, "invalid options accepted");
  PoolResource& pool = *pool_ptr;
  TrackingOptions topt;
  topt.event_log = in.ConsumeBool();
  topt.event_log_capacity = in.ConsumeIntegralInRange<std::size_t>(1, 64);
  TrackingResource tracked(pool, topt);
  const std::size_t max_bytes = std::min({up_max, hard, std::size_t(1) << 62});
  CHECK(pool.max_bytes() == max_bytes && tracked.max_bytes() == max_bytes, "max_bytes");

  std::vector<LiveBlock> live;
  std::vector<std::pair<std::uintptr_t, std::size_t>> stale;  // freed (address, bytes)

  auto books = [&] {
    return Books{pool.stats(), tracked.stats(), up.book(),
                 tracked.event_log() ? tracked.event_log()->total_recorded() : 0};
  };
  auto check_invariants = [&] {
    const PoolStats s = pool.stats();
    const TrackingStats ts = tracked.stats();
    std::size_t requested = 0, rounded = 0, tracked_bytes = 0, tracked_count = 0;
    std::array<std::uint64_t, kSizeBuckets> buckets{};
    for (const LiveBlock& b : live) {
      requested += b.bytes;
      rounded += round_up(b.bytes, kGranule);
      if (b.tracked) {
        tracked_bytes += b.bytes;
        ++tracked_count;
        ++buckets[size_bucket(b.bytes)];
      }
    }
    CHECK(s.requested == requested, "requested " + std::to_string(s.requested) + " vs model " + std::to_string(requested));
    CHECK(s.live_blocks == live.size(), "live blocks");
    CHECK(s.allocations - s.deallocations == live.size(), "allocations - deallocations");
    CHECK(s.in_use >= rounded && s.in_use <= s.reserved, "in_use " + std::to_string(s.in_use));
    CHECK(s.reserved == up.live_bytes, "reserved " + std::to_string(s.reserved) +
                                           " but the upstream holds " + std::to_string(up.live_bytes));
    CHECK(s.segments == up.live.size(), "segments vs upstream blocks");
    CHECK(s.upstream_allocations - s.upstream_deallocations == up.live.size(), "upstream counts");
    CHECK(s.reserved <= hard, "reserved above the hard limit");
    CHECK(s.peak_reserved >= s.reserved && s.peak_requested >= s.requested, "peaks");
    CHECK(s.largest_free <= s.reserved - s.in_use, "largest_free");
    CHECK(ts.current == tracked_bytes, "tracked current");
    CHECK(ts.allocations - ts.deallocations == tracked_count, "tracked counts");
    CHECK(ts.peak >= ts.current, "tracked peak");
    CHECK(ts.live == buckets, "tracked live buckets");
    // Geometry: sorted by address, no overlap, inside a segment, aligned.
    std::vector<LiveBlock> sorted = live;
    std::sort(sorted.begin(), sorted.end(),
              [](const LiveBlock& a, const LiveBlock& b) { return a.p < b.p; });
    const auto segs = pool.segments();
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      const LiveBlock& b = sorted[i];
      CHECK(b.p % b.alignment == 0 && b.p % kGranule == 0, "misaligned block");
      if (i + 1 < sorted.size())
        CHECK(b.p + round_up(b.bytes, kGranule) <= sorted[i + 1].p, "live blocks overlap");
      bool inside = false;
      for (const auto& sg : segs) {
        const auto beg = reinterpret_cast<std::uintptr_t>(sg.first);
        if (b.p >= beg && b.p + round_up(b.bytes, kGranule) <= beg + sg.second) inside = true;
      }
      CHECK(inside, "a live block outside every segment");
    }
    std::size_t seg_bytes = 0;
    for (const auto& sg : segs) {
      seg_bytes += sg.second;
      const auto beg = reinterpret_cast<std::uintptr_t>(sg.first);
      bool from_upstream = false;
      for (const auto& u : up.live)
        if (beg >= u.first && beg + sg.second <= u.first + u.second.first) from_upstream = true;
      CHECK(from_upstream, "a segment outside the upstream's blocks");
    }
    CHECK(seg_bytes <= s.reserved && seg_bytes >= s.in_use, "segment bytes");
  };
  // A request that must fail with `rule` and change nothing.
  auto expect_rejected = [&](const char* rule, auto&& call) {
    const Books before = books();
    try {
      call();
    } catch (const dilated::Error& e) {
      CHECK(std::string(e.rule()) == rule, std::string("rule ") + e.rule() + ", expected " + rule +
                                              ": " + e.what());
      CHECK(books() == before, std::string("a rejected request changed the books: ") + e.what());
      ++bad_requests;
      return;
    } catch (const std::exception& e) {
      fail(std::string("expected dilated::Error ") + rule + ", got: " + e.what());
    }
    fail(std::string("bad request accepted, expected ") + rule);
  };

  check_invariants();
  for (int step = 0; step < 512 && in.remaining_bytes() > 0; ++step) {
    ++operations;
    const int op = in.ConsumeIntegralInRange<int>(0, 11);
    if (op <= 4) {  // allocate
      const std::size_t bytes = pick_size(in, max_bytes), alignment = pick_alignment(in);
      const bool via_tracking = in.ConsumeBool();
      MemoryResource& r = via_tracking ? static_cast<MemoryResource&>(tracked) : pool;
      last_op = "allocate(" + std::to_string(bytes) + ", align " + std::to_string(alignment) +
                (via_tracking ? ") via tracking" : ") on the pool");
      const char* rule = bytes == 0                        ? rules::zero_size
                         : !pow2(alignment)                ? rules::alignment
                         : alignment > kPoolMaxAlignment   ? rules::alignment
                         : bytes > max_bytes               ? rules::huge_size
                                                           : nullptr;
      if (rule) {
        expect_rejected(rule, [&] { r.allocate(bytes, alignment); });
      } else {
        const std::size_t refusals = up.refusals;
        const std::size_t live_before = live.size();
        try {
          void* p = r.allocate(bytes, alignment);
          CHECK(p != nullptr, "null block");
          const auto a = reinterpret_cast<std::uintptr_t>(p);
          for (const LiveBlock& b : live)
            CHECK(a + bytes <= b.p || b.p + b.bytes <= a, "new block overlaps a live one");
          live.push_back({a, bytes, alignment, via_tracking});
          stale.erase(std::remove_if(stale.begin(), stale.end(),
                                     [&](const auto& x) { return x.first == a; }),
                      stale.end());
          ++allocations;
        } catch (const OutOfMemory& e) {
          ++out_of_memory;
          const PoolStats s = pool.stats();
          // The hard limit binds if the segment this request needs (at most
          // the small segment or the request rounded to the large
          // granularity, with alignment padding) does not fit under it.
          const std::size_t need = sat_add(sat_add(round_up(bytes, kGranule), alignment), kGranule);
          const std::size_t segment =
              sat_add(sat_add(std::max(o.small_segment, round_up(need, 4096)),
                              sat_add(need, o.large_granularity)), kGranule);
          CHECK(up.refusals > refusals || sat_add(s.reserved, segment) > hard ||
                    segment > up_max,
                std::string("OutOfMemory although the upstream never refused, the hard limit "
                            "does not bind and the upstream could give the segment: ") + e.what());
          CHECK(live.size() == live_before, "OutOfMemory changed the live blocks");
        } catch (const std::exception& e) {
          fail(std::string("allocate threw ") + e.what());
        }
      }
    } else if (op <= 6) {  // free a live block correctly
      if (live.empty()) continue;
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1);
      const LiveBlock b = live[i];
      last_op = "deallocate(live block of " + std::to_string(b.bytes) + ")" +
                (b.tracked ? " via tracking" : " on the pool");
      MemoryResource& r = b.tracked ? static_cast<MemoryResource&>(tracked) : pool;
      try {
        r.deallocate(reinterpret_cast<void*>(b.p), b.bytes, b.alignment);
      } catch (const std::exception& e) {
        fail(std::string("a valid free threw: ") + e.what());
      }
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      stale.emplace_back(b.p, b.bytes);
      ++frees;
      if (pool.stats().reserved > soft) {
        last_op += " above the soft limit";
        CHECK(pool.release_cached() == 0, "a free above the soft limit left a free segment cached");
      }
    } else if (op == 7) {  // a bad free
      const bool via_tracking = in.ConsumeBool();
      MemoryResource& r = via_tracking ? static_cast<MemoryResource&>(tracked) : pool;
      const int kind = in.ConsumeIntegralInRange<int>(0, 5);
      last_op = "bad free of kind " + std::to_string(kind);
      if (kind == 0) {  // a block freed before (double free or, once its segment is gone, foreign)
        if (stale.empty()) continue;
        const auto x = stale[in.ConsumeIntegralInRange<std::size_t>(0, stale.size() - 1)];
        const auto live_here = std::find_if(live.begin(), live.end(),
                                            [&](const LiveBlock& b) { return b.p == x.first; });
        if (live_here != live.end()) {
          if (live_here->bytes == x.second) continue;  // that would be a valid free
          expect_rejected(rules::size_mismatch,
                          [&] { r.deallocate(reinterpret_cast<void*>(x.first), x.second); });
          continue;
        }
        const Books before = books();
        try {
          r.deallocate(reinterpret_cast<void*>(x.first), x.second);
          fail("a second free of a block was accepted");
        } catch (const dilated::Error& e) {
          const std::string rule = e.rule();
          CHECK(rule == rules::double_free || rule == rules::foreign_pointer, rule);
          CHECK(books() == before, "a rejected double free changed the books");
          ++bad_requests;
        }
      } else if (kind == 1) {  // a live block with the wrong size
        if (live.empty()) continue;
        const LiveBlock& b = live[in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1)];
        std::size_t wrong = in.ConsumeIntegral<std::size_t>();
        if (wrong == b.bytes) wrong = b.bytes + 1;
        last_op += ": size " + std::to_string(wrong) + " for " + std::to_string(b.bytes);
        // Through the adaptor, a block of the pool's own is still the pool's.
        expect_rejected(rules::size_mismatch,
                        [&] { r.deallocate(reinterpret_cast<void*>(b.p), wrong); });
      } else if (kind == 2) {  // inside a live block
        if (live.empty()) continue;
        const LiveBlock& b = live[in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1)];
        if (b.bytes < 2) continue;
        const std::size_t off = in.ConsumeIntegralInRange<std::size_t>(1, b.bytes - 1);
        expect_rejected(rules::foreign_pointer,
                        [&] { r.deallocate(reinterpret_cast<void*>(b.p + off), b.bytes); });
      } else if (kind == 3) {  // memory the pool never had
        static char outside[64];
        std::uintptr_t a = in.ConsumeBool() ? reinterpret_cast<std::uintptr_t>(outside)
                                            : in.ConsumeIntegralInRange<std::uintptr_t>(1, std::uintptr_t(1) << 43);
        const std::size_t bytes = in.ConsumeIntegralInRange<std::size_t>(0, 1 << 22);
        expect_rejected(rules::foreign_pointer, [&] { r.deallocate(reinterpret_cast<void*>(a), bytes); });
      } else if (kind == 4) {  // null
        expect_rejected(rules::foreign_pointer, [&] { r.deallocate(nullptr, 64); });
      } else {  // a live block with an alignment that is not a power of two
        if (live.empty()) continue;
        const LiveBlock& b = live[in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1)];
        std::size_t align = in.ConsumeIntegral<std::size_t>();
        if (pow2(align)) align = 0;
        MemoryResource& own = b.tracked ? static_cast<MemoryResource&>(tracked) : pool;
        expect_rejected(rules::alignment,
                        [&] { own.deallocate(reinterpret_cast<void*>(b.p), b.bytes, align); });
      }
    } else if (op == 8) {  // the upstream or the system runs short, or recovers
      up.capacity = in.ConsumeBool() ? kMax : in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(1) << 34);
      up.available = static_cast<std::size_t>(in.ConsumeProbability<double>() * static_cast<double>(up.total));
      last_op = "limits: upstream capacity " + std::to_string(up.capacity) + ", available " +
                std::to_string(up.available);
    } else if (op == 9) {
      last_op = "release_cached";
      const std::size_t before = pool.stats().reserved;
      const std::size_t returned = pool.release_cached();
      const PoolStats s = pool.stats();
      CHECK(s.reserved + returned == before, "release_cached's figure");
      CHECK(pool.release_cached() == 0, "a second release_cached found more");
    } else if (op == 10) {
      last_op = "reset peaks";
      pool.reset_peaks();
      tracked.reset_peak();
      const PoolStats s = pool.stats();
      CHECK(s.peak_reserved == s.reserved && s.peak_requested == s.requested, "reset_peaks");
      CHECK(tracked.stats().peak == tracked.stats().current, "reset_peak");
    } else {  // stats text is well formed
      last_op = "to_json";
      const std::string j = tracked.to_json();
      CHECK(!j.empty() && j.front() == '{' && j.back() == '}', j);
    }
    check_invariants();
  }

  // Everything back: free every block, then the pool returns every segment.
  last_op = "final frees";
  for (const LiveBlock& b : live) {
    MemoryResource& r = b.tracked ? static_cast<MemoryResource&>(tracked) : pool;
    r.deallocate(reinterpret_cast<void*>(b.p), b.bytes, b.alignment);
  }
  live.clear();
  check_invariants();
  const PoolStats end = pool.stats();
  CHECK(end.requested == 0 && end.in_use == 0 && end.live_blocks == 0, "blocks still live");
  CHECK(tracked.stats().current == 0, "tracked bytes still live");
  last_op = "final release";
  pool.release_cached();
  CHECK(pool.stats().reserved == 0 && pool.stats().segments == 0, "segments kept after release");
  CHECK(up.live.empty() && up.live_bytes == 0, "the upstream still holds pool memory");
  return 0;
}
