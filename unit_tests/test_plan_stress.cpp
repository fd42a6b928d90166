// Stress of the Plan object: thousands of plan constructions and forward /
// backward calls of varied shapes and configs from several host threads at
// once. Every result must equal (bitwise) the same call made alone, and the
// process's heap in use and resident memory must not grow with the number of
// calls (a leaked per-call workspace, e.g. backward's delta buffer, would).
// Bounded by a call count and a time budget (sanitizer builds are slower).
#include <malloc.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "test_harness.hpp"

namespace dtest {
namespace {

using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;

constexpr int kMaxCalls = 10000;      // over all threads
constexpr double kTimeBudgetS = 20.0;  // whichever comes first
constexpr int kMinCalls = 400;         // or the test proves nothing

// Resident set size in bytes (/proc/self/statm, field 2, in pages).
std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t total = 0, resident = 0;
  f >> total >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}
// Heap bytes in use (malloc'd and not freed), glibc's own count.
std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// One shape/config of the rotation, with its inputs, outputs and expected
// (alone-computed) results.
struct Work {
  Case c;
  B::View4 q, k, v, dout, out, dq, dk, dv;
  B::ViewL lse;
  std::vector<double> expected;
  Work(Case cc, std::uint64_t seed) : c(std::move(cc)) {
    const ProblemShape& s = c.shape;
    q = to_view<B>(random_vector(numel(s), seed), s);
    k = to_view<B>(random_vector(numel(s), seed + 1), s);
    v = to_view<B>(random_vector(numel(s), seed + 2), s);
    dout = to_view<B>(random_vector(numel(s), seed + 3), s);
    out = B::View4("out", s.batch, s.seq_len, s.heads, s.head_dim);
    dq = B::View4("dq", s.batch, s.seq_len, s.heads, s.head_dim);
    dk = B::View4("dk", s.batch, s.seq_len, s.heads, s.head_dim);
    dv = B::View4("dv", s.batch, s.seq_len, s.heads, s.head_dim);
    lse = B::ViewL("lse", s.batch, s.heads, s.seq_len);
  }
  // A fresh plan per call: construction (validation, pattern, scratch
  // sizing) is part of what is stressed. Odd calls also run backward.
  std::vector<double> run(const B::exec& space, bool backward) const {
    const dilated::Plan<B::exec> plan(c.config, c.shape);
    plan.forward(space, q, k, v, out, lse);
    if (backward) plan.backward(space, q, k, v, out, lse, dout, dq, dk, dv);
    space.fence();
    std::vector<double> r = from_view(out);
    if (backward)
      for (const B::View4& g : {dq, dk, dv}) {
        const auto x = from_view(g);
        r.insert(r.end(), x.begin(), x.end());
      }
    return r;
  }
};

std::vector<Case> rotation() {
  std::vector<Case> cs;
  AttentionConfig partial = make_config({{24, 1}, {48, 3}}, true);
  partial.allow_partial_segments = true;
  AttentionConfig drop = make_config({{16, 1}, {32, 2}});
  drop.dropout_p = 0.2;
  drop.dropout_seed = 11;
  cs.push_back({make_config({{32, 1}}), {1, 32, 1, 8}});
  cs.push_back({make_config({{16, 1}, {32, 2}, {64, 4}}, true), {2, 64, 3, 16}});
  cs.push_back({partial, {1, 50, 2, 24}});
  cs.push_back({drop, {1, 64, 2, 32}});
  cs.push_back({make_config({{16, 1}, {32, 3}}, false, HeadMode::HeadGroups), {1, 64, 5, 16}});
  cs.push_back({make_config({{128, 1}}, true), {1, 128, 1, 64}});
  return cs;
}

// Runs body(thread_id, space) on `threads` host threads, each with its own
// execution-space instance (the same scheme as test_concurrency.cpp).
// Returns how many threads ran.
template <class F>
int on_host_threads(int threads, F&& body) {
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
  // Kokkos 3.x's partition_master runs the partitions one after another,
  // as a single partition, unless nested OpenMP is on.
  omp_set_max_active_levels(2);
  int ran = 0;
  Kokkos::OpenMP::partition_master([&](int id, int n) {
    if (id == 0) ran = n;
    body(id, B::exec());
  }, threads, 1);
  return ran;
#elif defined(KOKKOS_ENABLE_OPENMP)
  const int parts = std::min(threads, Kokkos::OpenMP().concurrency());
  auto instances =
      Kokkos::Experimental::partition_space(Kokkos::OpenMP(), std::vector<int>(parts, 1));
  std::vector<std::thread> pool;
  for (int t = 0; t < parts; ++t) pool.emplace_back([&, t] { body(t, instances[t]); });
  for (auto& th : pool) th.join();
  return parts;
#else
  (void)threads;
  body(0, B::exec());  // one Serial instance before Kokkos 4.2: no concurrent callers
  return 1;
#endif
}

TEST(PlanStress, ThousandsOfCallsFromSeveralThreadsInConstantMemory) {
  std::vector<Work> work;
  std::uint64_t seed = 7000;
  for (const Case& c : rotation()) work.emplace_back(c, seed += 10);
  for (Work& w : work) {
    w.expected = w.run(B::exec(), true);
    w.run(B::exec(), false);  // warm-up of the forward-only path too
  }
  // One concurrent round first, so that per-thread allocator arenas and
  // Kokkos' per-thread scratch reach their steady size before measuring.
  std::atomic<int> calls{0}, mismatches{0};
  int threads_ran = 0;
  const auto round = [&](int max_calls, double budget_s) {
    const auto t0 = std::chrono::steady_clock::now();
    threads_ran = on_host_threads(4, [&](int id, const B::exec& space) {
      for (int i = id;; i += 4) {
        const int n = calls.fetch_add(1);
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (n >= max_calls || el > budget_s) break;
        const Work& w = work[i % work.size()];
        const bool backward = (i / work.size()) % 2 == 0;
        const std::vector<double> r = w.run(space, backward);
        const std::size_t n_cmp = backward ? w.expected.size() : r.size();
        if (std::memcmp(r.data(), w.expected.data(), n_cmp * sizeof(double)) != 0) ++mismatches;
      }
    });
  };
  round(200, kTimeBudgetS);
  const std::size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  calls = 0;
  round(kMaxCalls, kTimeBudgetS);
  const int done = std::min(calls.load(), kMaxCalls);
  const std::size_t heap1 = heap_in_use(), rss1 = rss_bytes();
  std::cout << "[ stress   ] " << done << " calls on " << threads_ran << " threads; heap in use " << heap0 << " -> " << heap1
            << " bytes; RSS " << rss0 / 1024 << " -> " << rss1 / 1024 << " KiB\n";
  EXPECT_EQ(mismatches.load(), 0) << "results differ from the same calls made alone";
  EXPECT_GE(done, kMinCalls);
#if defined(KOKKOS_ENABLE_OPENMP)
  // Concurrent callers, if the host has more than one thread to give.
  EXPECT_EQ(threads_ran, std::min(4, Kokkos::OpenMP().concurrency()));
#endif
  // The smallest per-call workspace (delta of the 32-token case) is 128
  // bytes, so a leak of it over >= 400 backward-bearing calls exceeds 16 KiB;
  // RSS is coarser (pages, allocator caching): 8 MiB.
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in quarantine (RSS grows by design) and hides the
  // heap from mallinfo2; LeakSanitizer checks leaks at exit instead.
  (void)heap0, (void)heap1, (void)rss0, (void)rss1;
#else
  EXPECT_LE(heap1, heap0 + 16 * 1024) << "heap in use grew over " << done << " calls";
  EXPECT_LE(rss1, rss0 + 8 * 1024 * 1024) << "resident memory grew over " << done << " calls";
#endif
}

}  // namespace
}  // namespace dtest
