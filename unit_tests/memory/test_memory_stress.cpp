// Many threads, a long random trace of allocations and frees (sizes from bytes
// to hundreds of MiB, random alignments, frees from other threads), each
// block's contents checked against its own pattern before it is freed, live
// blocks checked for overlap at checkpoints, and the pool back to its baseline
// at the end. CI runs it in Release, under ASan+UBSan and under TSan; the
// operation count shrinks under sanitizers so the run stays in seconds
// (DILATED_MEMORY_STRESS_OPS overrides it).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "memory/errors.hpp"
#include "memory/host_resource.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DILATED_STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DILATED_STRESS_SANITIZED 1
#endif
#endif

namespace {

using namespace dilated::memory;
constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

struct Live {
  unsigned char* p = nullptr;
  std::size_t bytes = 0, alignment = 0;
  std::uint64_t tag = 0;
};

// The byte at offset i of a block tagged `tag`.
inline unsigned char pattern(std::uint64_t tag, std::size_t i) {
  return static_cast<unsigned char>((tag * 0x9E3779B97F4A7C15ull + i * 0x2545F491ull) >> 56);
}
// Small blocks are written whole; large ones at their head, middle and tail
// (writing gigabytes would measure memset, and untouched pages cost nothing).
template <class F>
void for_checked_bytes(std::size_t bytes, F&& f) {
  constexpr std::size_t kStripe = 2048;
  if (bytes <= 3 * kStripe) {
    for (std::size_t i = 0; i < bytes; ++i) f(i);
    return;
  }
  for (std::size_t i = 0; i < kStripe; ++i) f(i);
  for (std::size_t i = bytes / 2; i < bytes / 2 + kStripe; ++i) f(i);
  for (std::size_t i = bytes - kStripe; i < bytes; ++i) f(i);
}
void fill(const Live& b) {
  for_checked_bytes(b.bytes, [&](std::size_t i) { b.p[i] = pattern(b.tag, i); });
}
bool intact(const Live& b) {
  bool ok = true;
  for_checked_bytes(b.bytes, [&](std::size_t i) { ok &= b.p[i] == pattern(b.tag, i); });
  return ok;
}

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const std::uint64_t gen = gen_;
    if (++waiting_ == n_) {
      waiting_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, waiting_ = 0;
  std::uint64_t gen_ = 0;
};

std::size_t random_size(std::mt19937_64& rng) {
  const unsigned r = rng() % 10000;
  if (r < 6000) return 1 + rng() % (4 * KiB);                // bytes to KiB
  if (r < 9000) return 4 * KiB + rng() % (1 * MiB);          // up to the small limit
  if (r < 9997) return 1 * MiB + rng() % (16 * MiB);         // large
  return 128 * MiB + rng() % (896 * MiB);                    // rare: up to a GiB
}

TEST(MemoryStress, ManyThreadsLongRandomTrace) {
#ifdef DILATED_STRESS_SANITIZED
  std::size_t total_ops = 300000;
#else
  std::size_t total_ops = 2000000;
#endif
  if (const char* env = std::getenv("DILATED_MEMORY_STRESS_OPS")) total_ops = std::strtoull(env, nullptr, 10);
  constexpr int kThreads = 8;  // more threads than cores: preemption inside critical sections
  constexpr int kCheckpoints = 8;
  constexpr std::size_t kMaxLive = 32;
  const std::size_t ops_per_thread = total_ops / kThreads;

  HostResource host;
  PoolOptions options;
  // Past 8 GiB, frees hand wholly free segments back while other threads
  // allocate (and thread 0 releases the cache now and then): the release
  // path runs concurrently with allocation too.
  options.policy.soft_limit = 8192 * MiB;
  PoolResource pool(host, options);
  TrackingResource tracked(pool);
  const PoolStats baseline = pool.stats();

  std::vector<std::vector<Live>> live(kThreads);
  std::mutex handoff_mutex;
  std::deque<Live> handoff;  // blocks one thread allocated and another frees
  Barrier barrier(kThreads);
  std::atomic<std::size_t> corrupt{0}, overlaps{0}, ops_done{0};

  auto checkpoint = [&] {
    std::vector<std::pair<std::uintptr_t, std::size_t>> all;
    for (auto& v : live)
      for (auto& b : v) all.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.bytes);
    {
      std::lock_guard<std::mutex> lock(handoff_mutex);
      for (auto& b : handoff) all.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.bytes);
    }
    std::sort(all.begin(), all.end());
    for (std::size_t i = 1; i < all.size(); ++i)
      if (all[i - 1].first + all[i - 1].second > all[i].first) ++overlaps;
  };

  auto worker = [&](int t) {
    std::mt19937_64 rng(1234 + t);
    std::uint64_t next_tag = std::uint64_t(t) << 48;
    auto free_block = [&](const Live& b) {
      if (!intact(b)) ++corrupt;
      tracked.deallocate(b.p, b.bytes, b.alignment);
    };
    std::size_t huge_live = 0;
    for (std::size_t op = 0; op < ops_per_thread; ++op) {
      if (op % (ops_per_thread / kCheckpoints + 1) == 0) {
        barrier.wait();
        if (t == 0) checkpoint();
        barrier.wait();
      }
      if (t == 0 && op % 20000 == 19999) pool.release_cached();
      auto& mine = live[t];
      const unsigned r = rng() % 100;
      if (mine.empty() || (r < 52 && mine.size() < kMaxLive)) {
        Live b;
        b.bytes = random_size(rng);
        if (b.bytes >= 128 * MiB) {
          if (huge_live) b.bytes = 1 + rng() % KiB;
          else ++huge_live;
        }
        b.alignment = std::size_t(1) << (3 + rng() % 10);  // 8 .. 4096
        b.tag = next_tag++;
        b.p = static_cast<unsigned char*>(tracked.allocate(b.bytes, b.alignment));
        if (reinterpret_cast<std::uintptr_t>(b.p) % b.alignment) ++corrupt;
        fill(b);
        mine.push_back(b);
      } else if (r < 88) {
        const std::size_t i = rng() % mine.size();
        const Live b = mine[i];
        mine[i] = mine.back();
        mine.pop_back();
        if (b.bytes >= 128 * MiB) --huge_live;
        if (rng() % 8 == 0 && b.bytes < 128 * MiB) {
          std::lock_guard<std::mutex> lock(handoff_mutex);
          handoff.push_back(b);  // someone else frees it
        } else {
          free_block(b);
        }
      } else {
        Live b;
        {
          std::lock_guard<std::mutex> lock(handoff_mutex);
          if (handoff.empty()) continue;
          b = handoff.front();
          handoff.pop_front();
        }
        free_block(b);
      }
      ops_done.fetch_add(1, std::memory_order_relaxed);
    }
    barrier.wait();
    if (t == 0) checkpoint();
    barrier.wait();
    for (const Live& b : live[t]) free_block(b);
    live[t].clear();
  };

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  for (const Live& b : handoff) {
    if (!intact(b)) ++corrupt;
    tracked.deallocate(b.p, b.bytes, b.alignment);
  }
  handoff.clear();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const PoolStats s = pool.stats();
  std::printf("stress: %zu operations on %d threads in %.2f s; peak reserved %.1f MiB, peak requested %.1f MiB, %llu upstream allocations\n",
              ops_done.load(), kThreads, seconds, s.peak_reserved / double(MiB),
              s.peak_requested / double(MiB), (unsigned long long)s.upstream_allocations);
  EXPECT_GE(ops_done.load(), total_ops * 8 / 10);  // hand-off pops of an empty queue are not counted
  EXPECT_EQ(corrupt.load(), 0u) << "a block's contents changed while it was live (overlap) or it was misaligned";
  EXPECT_EQ(overlaps.load(), 0u);
  EXPECT_EQ(s.requested, 0u);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(tracked.stats().current, 0u);
  EXPECT_EQ(s.allocations, s.deallocations);
  pool.release_cached();  // only wholly free segments go: all of them, if all merged back
  EXPECT_EQ(pool.stats().reserved, baseline.reserved);
  EXPECT_EQ(pool.stats().segments, 0u);
  EXPECT_EQ(host.bytes_held(), 0u);
}

// Concurrent growth against a hard limit: the limit holds under contention.
TEST(MemoryStress, HardLimitHoldsUnderContention) {
  HostResource host;
  PoolOptions o;
  o.policy.hard_limit = 24 * MiB;
  PoolResource pool(host, o);
  std::atomic<int> oom{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::pair<void*, std::size_t>> mine;
      for (int i = 0; i < 2000; ++i) {
        if (mine.size() < 6 && rng() % 4) {
          const std::size_t bytes = 1 * MiB + rng() % (8 * MiB);
          try {
            mine.emplace_back(pool.allocate(bytes), bytes);
          } catch (const OutOfMemory&) {
            ++oom;
          }
        } else if (!mine.empty()) {
          pool.deallocate(mine.back().first, mine.back().second);
          mine.pop_back();
        }
        EXPECT_LE(pool.stats().reserved, 24 * MiB);
      }
      for (auto& b : mine) pool.deallocate(b.first, b.second);
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(pool.stats().peak_reserved, 24 * MiB);
  EXPECT_GT(oom.load(), 0) << "the trace should have hit the limit";
  EXPECT_EQ(pool.stats().live_blocks, 0u);
}

}  // namespace
