// Upstreams (host, NUMA), the tracking adaptor, the event log and the
// address table under the pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <unordered_map>

#include "dilated/dilated_config.hpp"
#include "memory/address_map.hpp"
#include "memory/errors.hpp"
#include "memory/host_resource.hpp"
#include "memory/memory_report.hpp"
#include "memory/numa.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

namespace {

using namespace dilated::memory;
constexpr std::size_t MiB = 1024 * 1024;

template <class F>
void expect_rule(const char* rule, F&& f) {
  try {
    f();
    ADD_FAILURE() << "expected dilated::Error " << rule;
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), rule) << e.what();
  }
}

void check_upstream_misuse(MemoryResource& r, std::size_t held_before) {
  auto held = [&] {
    if (auto* h = dynamic_cast<HostResource*>(&r)) return h->bytes_held();
    return dynamic_cast<NumaHostResource&>(r).bytes_held();
  };
  expect_rule(rules::zero_size, [&] { r.allocate(0); });
  expect_rule(rules::huge_size, [&] { r.allocate(r.max_bytes() + 1); });
  expect_rule(rules::alignment, [&] { r.allocate(64, 24); });
  void* p = r.allocate(10000, 4096);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 4096, 0u);
  std::memset(p, 7, 10000);
  expect_rule(rules::size_mismatch, [&] { r.deallocate(p, 9999, 4096); });
  int x = 0;
  expect_rule(rules::foreign_pointer, [&] { r.deallocate(&x, sizeof x); });
  EXPECT_EQ(held(), held_before + 10000);
  r.deallocate(p, 10000, 4096);
  expect_rule(rules::double_free, [&] { r.deallocate(p, 10000, 4096); });
  EXPECT_EQ(held(), held_before);
}

TEST(MemoryUpstream, HostResourceChecksEveryCall) {
  HostResource host;
  EXPECT_GT(host.max_bytes(), 0u);
  check_upstream_misuse(host, 0);
}

TEST(MemoryUpstream, NumaResourceDegradesOrBindsAndReportsPlacement) {
  const NumaTopology& t = numa_topology();
  EXPECT_FALSE(t.summary.empty());
  NumaHostResource plain;
  EXPECT_FALSE(plain.status().empty());
  if (t.nodes < 2) {
    EXPECT_FALSE(plain.binds()) << plain.status();
  }
  check_upstream_misuse(plain, 0);
#if DILATED_ENABLE_HWLOC
  ASSERT_TRUE(t.hwloc) << t.summary;
  // The hwloc path, forced on this machine's node(s).
  NumaHostResource bound(NumaOptions{-1, false, true});
  EXPECT_TRUE(bound.binds());
  check_upstream_misuse(bound, 0);
  const std::size_t bytes = 64 * 4096;
  char* p = static_cast<char*>(bound.allocate(bytes, 4096));
  std::memset(p, 1, bytes);  // make every page resident
  const PagePlacement where = page_placement(p, bytes);
  EXPECT_TRUE(where.known);
  EXPECT_EQ(where.pages, 64u);
  EXPECT_EQ(where.sampled, 64u);
  EXPECT_EQ(where.not_resident, 0u);
  const int node = calling_thread_numa_node();
  ASSERT_GE(node, 0);
  ASSERT_GT(where.per_node.size(), static_cast<std::size_t>(node));
  EXPECT_EQ(where.per_node[node], 64u) << where.to_string();
  EXPECT_NE(where.to_string().find("node" + std::to_string(node) + " 100%"), std::string::npos)
      << where.to_string();
  bound.deallocate(p, bytes, 4096);
#else
  EXPECT_FALSE(t.hwloc);
  EXPECT_FALSE(page_placement(&t, 1).known);
#endif
}

TEST(MemoryTracking, CountsCurrentPeakAndBuckets) {
  HostResource host;
  PoolResource pool(host);
  TrackingResource track(pool, TrackingOptions{true, 4});
  void* a = track.allocate(1000);
  void* b = track.allocate(3000);
  void* c = track.allocate(3 * MiB);
  track.deallocate(b, 3000);
  TrackingStats s = track.stats();
  EXPECT_EQ(s.current, 1000 + 3 * MiB);
  EXPECT_EQ(s.peak, 4000 + 3 * MiB);
  EXPECT_EQ(s.allocations, 3u);
  EXPECT_EQ(s.deallocations, 1u);
  EXPECT_EQ(s.histogram[size_bucket(1000)], 1u);
  EXPECT_EQ(s.histogram[size_bucket(3000)], 1u);
  EXPECT_EQ(s.live[size_bucket(3000)], 0u);
  EXPECT_EQ(s.live[size_bucket(3 * MiB)], 1u);
  EXPECT_EQ(size_bucket(1024), size_bucket(1535));
  EXPECT_EQ(size_bucket(1536), size_bucket(1024) + 1);
  EXPECT_EQ(bucket_floor(size_bucket(1536)), 1536u);
  // Peak reserved (2 MiB small + 4 MiB large segment) over peak requested.
  EXPECT_NEAR(track.fragmentation(), double(6 * MiB) / (4000 + 3 * MiB), 1e-12);

  // A rejected free changes neither the statistics nor the pool.
  const TrackingStats before = track.stats();
  const PoolStats pool_before = pool.stats();
  expect_rule(rules::double_free, [&] { track.deallocate(b, 3000); });
  EXPECT_EQ(track.stats().current, before.current);
  EXPECT_EQ(track.stats().deallocations, before.deallocations);
  EXPECT_EQ(pool.stats(), pool_before);

  const std::string j = track.to_json();
  for (const char* key : {"\"current\": ", "\"peak\": ", "\"histogram\": [", "\"bucket_bytes\": 2048",
                          "\"pool\": {", "\"fragmentation\": "})
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  const std::string report = memory_report(pool, &track, "test");
  EXPECT_NE(report.find("peak"), std::string::npos) << report;
  EXPECT_NE(report.find("NUMA pages"), std::string::npos) << report;

  track.deallocate(a, 1000);
  track.deallocate(c, 3 * MiB);
  EXPECT_EQ(track.stats().current, 0u);

  // The log keeps the last 4 of the 6 events, oldest first.
  const auto events = track.event_log()->events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(track.event_log()->total_recorded(), 6u);
  EXPECT_EQ(events[0].sequence, 2u);
  EXPECT_TRUE(events[0].allocate);
  EXPECT_EQ(events[0].bytes, 3 * MiB);
  EXPECT_FALSE(events[3].allocate);
  EXPECT_EQ(events[3].address, reinterpret_cast<std::uintptr_t>(c));
  const std::string csv = track.event_log()->to_csv();
  EXPECT_EQ(csv.rfind("sequence,time_ns,op,address,bytes,alignment,thread\n", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
}

TEST(MemoryAddressMap, AgreesWithStdUnorderedMapOverRandomOperations) {
  dilated::memory::details::AddressMap<int> m;
  std::unordered_map<std::uintptr_t, int> ref;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) {
    // Clustered keys (256-byte steps in a small range) force long probe runs.
    const std::uintptr_t key = 0x10000 + 256 * (rng() % 3000);
    if (rng() % 2) {
      if (!ref.count(key)) {
        m.insert(key, i);
        ref[key] = i;
      }
    } else {
      EXPECT_EQ(m.erase(key), ref.erase(key) == 1);
    }
    if (i % 1000 == 0) {
      ASSERT_EQ(m.size(), ref.size());
      for (auto& kv : ref) {
        int* v = m.find(kv.first);
        ASSERT_NE(v, nullptr);
        ASSERT_EQ(*v, kv.second);
      }
    }
  }
}

}  // namespace
