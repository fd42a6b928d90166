// The pool: reuse, splitting and coalescing, alignment, the pressure policy,
// and every misuse rejected with its rule while the pool stays unchanged.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "memory/errors.hpp"
#include "memory/host_resource.hpp"
#include "memory/pool_resource.hpp"

namespace dilated {
namespace memory {
// Readable failures of EXPECT_EQ on snapshots.
void PrintTo(const PoolStats& s, std::ostream* os) { *os << s.to_json(); }
}  // namespace memory
}  // namespace dilated

namespace {

using namespace dilated::memory;
constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

// Runs f, expects dilated::Error with `rule`, and that the pool's books are
// exactly as before.
template <class F>
void expect_rejected(PoolResource& pool, const char* rule, F&& f) {
  const PoolStats before = pool.stats();
  try {
    f();
    ADD_FAILURE() << "expected dilated::Error " << rule;
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), rule) << e.what();
    EXPECT_NE(std::string(e.what()).find(pool.name()), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool.stats(), before) << "pool state changed by a rejected call";
}

TEST(MemoryPool, AllocationsAreAlignedDistinctAndUsable) {
  HostResource host;
  PoolResource pool(host);
  std::vector<std::pair<char*, std::size_t>> blocks;
  for (std::size_t bytes : {1ul, 100ul, 256ul, 257ul, 4000ul, 70000ul, 1ul * MiB, 3 * MiB + 5}) {
    char* p = static_cast<char*>(pool.allocate(bytes));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kDefaultAlignment, 0u);
    std::memset(p, 0xAB, bytes);
    blocks.emplace_back(p, bytes);
  }
  for (std::size_t i = 0; i < blocks.size(); ++i)
    for (std::size_t j = i + 1; j < blocks.size(); ++j) {
      const bool disjoint = blocks[i].first + blocks[i].second <= blocks[j].first ||
                            blocks[j].first + blocks[j].second <= blocks[i].first;
      EXPECT_TRUE(disjoint) << i << " overlaps " << j;
    }
  PoolStats s = pool.stats();
  EXPECT_EQ(s.live_blocks, blocks.size());
  EXPECT_EQ(s.requested, 1 + 100 + 256 + 257 + 4000 + 70000 + MiB + 3 * MiB + 5);
  EXPECT_EQ(s.reserved, host.bytes_held());
  for (auto& b : blocks) pool.deallocate(b.first, b.second);
  s = pool.stats();
  EXPECT_EQ(s.requested, 0u);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_GT(s.reserved, 0u);  // cached
  EXPECT_EQ(pool.release_cached(), s.reserved);
  EXPECT_EQ(pool.stats().reserved, 0u);
  EXPECT_EQ(host.bytes_held(), 0u);
}

TEST(MemoryPool, RepeatedSizesReuseCachedBlocks) {
  HostResource host;
  PoolResource pool(host);
  for (int i = 0; i < 1000; ++i) {
    void* a = pool.allocate(48 * KiB);
    void* b = pool.allocate(5 * MiB);
    pool.deallocate(a, 48 * KiB);
    pool.deallocate(b, 5 * MiB);
  }
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.upstream_allocations, 2u);  // one small, one large segment
  EXPECT_EQ(s.allocations, 2000u);
  EXPECT_EQ(s.deallocations, 2000u);
}

TEST(MemoryPool, SplitsLargeBlocksAndCoalescesThemBack) {
  HostResource host;
  PoolResource pool(host);
  void* whole = pool.allocate(8 * MiB);
  pool.deallocate(whole, 8 * MiB);
  ASSERT_EQ(pool.stats().segments, 1u);
  void* part[4];
  for (auto& p : part) p = pool.allocate(2 * MiB);  // carved from the cached 8 MiB
  EXPECT_EQ(pool.stats().upstream_allocations, 1u);
  EXPECT_EQ(pool.stats().free_blocks, 0u);
  for (int i : {1, 3, 0, 2}) pool.deallocate(part[i], 2 * MiB);  // merged both ways on demand
  void* again = pool.allocate(8 * MiB);  // only fits if the four merged back into one block
  EXPECT_EQ(again, whole);
  EXPECT_EQ(pool.stats().upstream_allocations, 1u);
  pool.deallocate(again, 8 * MiB);
  void* two = pool.allocate(2 * MiB);  // carved from the merged block again
  EXPECT_EQ(two, whole);
  pool.deallocate(two, 2 * MiB);
  void* after = pool.allocate(8 * MiB);
  EXPECT_EQ(after, whole);
  pool.deallocate(after, 8 * MiB);
}

TEST(MemoryPool, HonoursLargeAlignments) {
  HostResource host;
  PoolResource pool(host);
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t a = 512; a <= 2 * MiB; a *= 4) {
    for (std::size_t bytes : {std::size_t(1000), 3 * MiB}) {
      void* p = pool.allocate(bytes, a);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u) << "alignment " << a;
      std::memset(p, 1, bytes);
      blocks.emplace_back(p, a);
      pool.deallocate(p, bytes, a);
    }
  }
  EXPECT_EQ(pool.stats().live_blocks, 0u);
}

TEST(MemoryPool, ZeroSizeIsRejected) {
  HostResource host;
  PoolResource pool(host);
  void* keep = pool.allocate(1000);
  expect_rejected(pool, rules::zero_size, [&] { pool.allocate(0); });
  pool.deallocate(keep, 1000);
}

TEST(MemoryPool, HugeSizeIsRejected) {
  HostResource host;
  PoolResource pool(host);
  void* keep = pool.allocate(1000);
  expect_rejected(pool, rules::huge_size, [&] { pool.allocate(std::size_t(1) << 62); });
  expect_rejected(pool, rules::huge_size, [&] { pool.allocate(host.max_bytes() + 1); });
  pool.deallocate(keep, 1000);
}

// Host memory that claims a given bound (max_bytes()), for the pool's size
// arithmetic near an upstream's limit.
class BoundedHost final : public MemoryResource {
 public:
  explicit BoundedHost(std::size_t max) : max_(max) {}
  std::string name() const override { return "bounded-host"; }
  MemoryKind kind() const override { return MemoryKind::Host; }
  std::size_t max_alignment() const override { return host_.max_alignment(); }
  std::size_t max_bytes() const override { return max_; }

 protected:
  void* do_allocate(std::size_t b, std::size_t a, Stream s) override { return host_.allocate(b, a, s); }
  void do_deallocate(void* p, std::size_t b, std::size_t a, Stream s) override {
    host_.deallocate(p, b, a, s);
  }

 private:
  HostResource host_;
  std::size_t max_;
};

// fuzz_pool found these: an upstream that claims no bound let a request of
// 2^64 - 2735 bytes wrap to a 256-byte segment; now the pool's max_bytes()
// is at most 2^62 and such requests are huge_size errors that change nothing.
TEST(MemoryPool, UnboundedUpstreamStillRejectsAbsurdSizes) {
  BoundedHost unbounded(~std::size_t(0));
  PoolResource pool(unbounded);
  EXPECT_EQ(pool.max_bytes(), std::size_t(1) << 62);
  void* keep = pool.allocate(1000);
  for (std::size_t bytes : {~std::size_t(0) - 2734, ~std::size_t(0), (std::size_t(1) << 62) + 1})
    expect_rejected(pool, rules::huge_size, [&] { pool.allocate(bytes, 1024); });
  pool.deallocate(keep, 1000);
}

// fuzz_pool: a request whose segment (rounded to the granularity) is more
// than the upstream can ever give fails with OutOfMemory before anything
// cached is released (the upstream's huge_size error used to escape, after
// the cache had been dropped).
TEST(MemoryPool, SegmentBeyondTheUpstreamBoundFailsBeforeReleasingTheCache) {
  BoundedHost bounded(3 * MiB + 1000);
  PoolResource pool(bounded);  // large segments in multiples of 2 MiB
  pool.deallocate(pool.allocate(2 * MiB), 2 * MiB);  // one cached large segment
  const PoolStats before = pool.stats();
  ASSERT_EQ(before.segments, 1u);
  EXPECT_THROW(pool.allocate(3 * MiB), OutOfMemory);  // needs a 4 MiB segment
  const PoolStats after = pool.stats();  // (the free block left its quick list: a merge)
  EXPECT_EQ(after.reserved, before.reserved) << "the failed request released the cache";
  EXPECT_EQ(after.segments, before.segments);
  EXPECT_EQ(after.released_segments, before.released_segments);
  EXPECT_EQ(after.upstream_allocations, before.upstream_allocations);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.requested, 0u);
  void* p = pool.allocate(2 * MiB);  // the cache still serves
  EXPECT_EQ(pool.stats().upstream_allocations, before.upstream_allocations);
  pool.deallocate(p, 2 * MiB);
}

// fuzz_pool: with the default options (2 MiB granularity, 64 MiB oversize) a
// request of 62-64 MiB got a fresh 64 MiB segment - an oversize block, which
// serves only oversize requests - and failed with "internal error". A
// request below the oversize threshold now gets a segment below it.
TEST(MemoryPool, RequestsJustBelowOversizeAreServed) {
  HostResource host;  // untouched pages: the 64 MiB cost address space only
  PoolResource pool(host);
  for (std::size_t bytes : {62 * MiB + 1, 63 * MiB, 64 * MiB - 256, 64 * MiB - 1}) {
    void* p = nullptr;
    ASSERT_NO_THROW(p = pool.allocate(bytes)) << bytes;
    ASSERT_NE(p, nullptr);
    pool.deallocate(p, bytes);
    void* q = nullptr;
    ASSERT_NO_THROW(q = pool.allocate(63 * MiB, MiB)) << "with 1 MiB alignment";
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % MiB, 0u);
    pool.deallocate(q, 63 * MiB);
    pool.release_cached();
  }
  EXPECT_EQ(pool.stats().reserved, 0u);
}

TEST(MemoryPool, BadAlignmentIsRejected) {
  HostResource host;
  PoolResource pool(host);
  void* keep = pool.allocate(1000);
  for (std::size_t a : {std::size_t(0), std::size_t(3), std::size_t(48), std::size_t(1000)})
    expect_rejected(pool, rules::alignment, [&] { pool.allocate(64, a); });
  expect_rejected(pool, rules::alignment, [&] { pool.allocate(64, 4 * MiB); });  // above the max
  pool.deallocate(keep, 1000);
}

TEST(MemoryPool, DoubleFreeIsRejected) {
  HostResource host;
  PoolResource pool(host);
  void* a = pool.allocate(1000);
  void* b = pool.allocate(1000);  // b follows a in the segment
  void* keep = pool.allocate(1000);
  pool.deallocate(a, 1000);
  expect_rejected(pool, rules::double_free, [&] { pool.deallocate(a, 1000); });
  pool.deallocate(b, 1000);  // b merges into a's free block: no block starts at b now
  expect_rejected(pool, rules::double_free, [&] { pool.deallocate(b, 1000); });
  void* big = pool.allocate(5 * MiB);
  pool.deallocate(big, 5 * MiB);
  expect_rejected(pool, rules::double_free, [&] { pool.deallocate(big, 5 * MiB); });
  pool.deallocate(keep, 1000);
}

TEST(MemoryPool, ForeignPointerIsRejected) {
  HostResource host;
  PoolResource pool(host);
  char* a = static_cast<char*>(pool.allocate(4096));
  int on_stack = 0;
  void* from_malloc = std::malloc(64);
  expect_rejected(pool, rules::foreign_pointer, [&] { pool.deallocate(&on_stack, sizeof on_stack); });
  expect_rejected(pool, rules::foreign_pointer, [&] { pool.deallocate(from_malloc, 64); });
  expect_rejected(pool, rules::foreign_pointer, [&] { pool.deallocate(a + 256, 256); });  // interior
  expect_rejected(pool, rules::foreign_pointer, [&] { pool.deallocate(nullptr, 64); });
  std::free(from_malloc);
  pool.deallocate(a, 4096);
}

TEST(MemoryPool, SizeMismatchIsRejected) {
  HostResource host;
  PoolResource pool(host);
  void* a = pool.allocate(1000);
  void* big = pool.allocate(3 * MiB);
  expect_rejected(pool, rules::size_mismatch, [&] { pool.deallocate(a, 999); });
  expect_rejected(pool, rules::size_mismatch, [&] { pool.deallocate(a, 3 * MiB); });  // other arena
  expect_rejected(pool, rules::size_mismatch, [&] { pool.deallocate(big, 1000); });
  pool.deallocate(a, 1000);
  pool.deallocate(big, 3 * MiB);
  EXPECT_EQ(pool.stats().live_blocks, 0u);
}

// An upstream with a fixed budget, like a GPU: fails with OutOfMemory past it.
class BudgetUpstream final : public MemoryResource {
 public:
  explicit BudgetUpstream(std::size_t budget) : budget_(budget) {}
  std::string name() const override { return "budget"; }
  MemoryKind kind() const override { return MemoryKind::Host; }
  std::size_t max_alignment() const override { return host_.max_alignment(); }
  std::size_t max_bytes() const override { return budget_; }
  std::size_t held() const { return host_.bytes_held(); }
  int failures = 0;

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override {
    if (host_.bytes_held() + bytes > budget_) {
      ++failures;
      throw OutOfMemory("budget exhausted");
    }
    return host_.allocate(bytes, alignment, s);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override {
    host_.deallocate(p, bytes, alignment, s);
  }

 private:
  HostResource host_;
  std::size_t budget_;
};

TEST(MemoryPressure, FailedGrowthIsRetriedAfterReleasingCachedBlocks) {
  BudgetUpstream up(10 * MiB);
  PoolResource pool(up);
  void* small[3];
  for (auto& p : small) p = pool.allocate(1 * MiB);  // two small segments
  for (auto& p : small) pool.deallocate(p, 1 * MiB);  // 4 MiB cached
  void* b = pool.allocate(8 * MiB);  // 4 + 8 > 10: fails, releases, retries
  EXPECT_EQ(up.failures, 1);
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.retries_after_release, 1u);
  EXPECT_EQ(s.released_segments, 2u);
  EXPECT_EQ(s.reserved, 8 * MiB);
  pool.deallocate(b, 8 * MiB);
}

TEST(MemoryPressure, GrowthReturnsUnfitCachedLargeSegmentsFirst) {
  HostResource host;
  PoolResource pool(host);
  void* a = pool.allocate(4 * MiB);
  void* b = pool.allocate(6 * MiB);
  pool.deallocate(a, 4 * MiB);
  pool.deallocate(b, 6 * MiB);  // 10 MiB cached, in two segments
  void* c = pool.allocate(9 * MiB);  // fits neither: the smallest goes, then the next
  PoolStats s = pool.stats();
  EXPECT_EQ(s.released_segments, 2u);
  EXPECT_EQ(s.reserved, 10 * MiB);
  void* d = pool.allocate(3 * MiB);  // needs growth; nothing wholly free to return
  s = pool.stats();
  EXPECT_EQ(s.released_segments, 2u);
  EXPECT_EQ(s.reserved, 14 * MiB);
  pool.deallocate(c, 9 * MiB);
  pool.deallocate(d, 3 * MiB);
  for (int i = 0; i < 10; ++i) {  // repeated sizes: no upstream traffic at all
    void* e = pool.allocate(9 * MiB);
    pool.deallocate(e, 9 * MiB);
  }
  EXPECT_EQ(pool.stats().upstream_allocations, s.upstream_allocations);
}

TEST(MemoryPressure, WithoutRetryTheFailureSurfacesAndNothingLeaks) {
  BudgetUpstream up(10 * MiB);
  PoolOptions o;
  o.policy.retry_after_release = false;
  PoolResource pool(up, o);
  void* small[3];
  for (auto& p : small) p = pool.allocate(1 * MiB);
  for (auto& p : small) pool.deallocate(p, 1 * MiB);  // 4 MiB cached
  const PoolStats before = pool.stats();
  EXPECT_THROW(pool.allocate(8 * MiB), OutOfMemory);
  EXPECT_EQ(pool.stats(), before);
  EXPECT_EQ(up.held(), 4 * MiB);
}

TEST(MemoryPressure, HardLimitIsNeverPassed) {
  HostResource host;
  PoolOptions o;
  o.policy.hard_limit = 8 * MiB;
  PoolResource pool(host, o);
  void* a = pool.allocate(6 * MiB);
  try {
    pool.allocate(4 * MiB);
    ADD_FAILURE() << "hard limit passed";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("hard limit"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool.stats().reserved, 6 * MiB);
  pool.deallocate(a, 6 * MiB);
  void* b = pool.allocate(7 * MiB);  // needs 8 MiB: the cached 6 MiB goes first
  EXPECT_EQ(pool.stats().released_segments, 1u);
  EXPECT_EQ(pool.stats().reserved, 8 * MiB);
  EXPECT_LE(pool.stats().peak_reserved, 8 * MiB);
  pool.deallocate(b, 7 * MiB);
  EXPECT_THROW(pool.allocate(9 * MiB), dilated::Error);  // > max_bytes(): huge
}

TEST(MemoryPressure, SoftLimitReturnsFreedSegments) {
  HostResource host;
  PoolOptions o;
  o.policy.soft_limit = 4 * MiB;
  PoolResource pool(host, o);
  void* a = pool.allocate(6 * MiB);
  pool.deallocate(a, 6 * MiB);
  EXPECT_EQ(pool.stats().reserved, 0u);
  EXPECT_EQ(host.bytes_held(), 0u);
  void* small = pool.allocate(1000);  // under the limit: cached after free
  pool.deallocate(small, 1000);
  EXPECT_EQ(pool.stats().reserved, 2 * MiB);
}

TEST(MemoryPressure, LowSystemMemoryReleasesCacheBeforeGrowing) {
  HostResource host;
  PoolOptions o;
  bool low = false;
  o.policy.min_available_fraction = 0.10;
  o.policy.probe = [&low] { return SystemMemory{100 * MiB, low ? 5 * MiB : 50 * MiB}; };
  PoolResource pool(host, o);
  void* a = pool.allocate(512 * 1024);
  pool.deallocate(a, 512 * 1024);    // a cached 2 MiB small segment
  void* b = pool.allocate(3 * MiB);  // plenty free: the small segment stays
  EXPECT_EQ(pool.stats().reserved, 6 * MiB);
  EXPECT_EQ(pool.stats().released_segments, 0u);
  pool.deallocate(b, 3 * MiB);
  low = true;
  // Growth returns b's unfit 4 MiB segment anyway; the low probe also
  // returns the small segment.
  void* c = pool.allocate(5 * MiB);
  EXPECT_EQ(pool.stats().released_segments, 2u);
  EXPECT_EQ(pool.stats().reserved, 6 * MiB);
  pool.deallocate(c, 5 * MiB);
}

TEST(MemoryPool, StatsJsonNamesEveryFigure) {
  HostResource host;
  PoolResource pool(host);
  void* a = pool.allocate(1000);
  const std::string j = pool.stats().to_json();
  for (const char* key : {"\"reserved\": 2097152", "\"requested\": 1000", "\"peak_reserved\"",
                          "\"fragmentation\"", "\"upstream_allocations\": 1"})
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  pool.deallocate(a, 1000);
}

}  // namespace
