// One plan called concurrently from several host threads, each on its own
// execution-space instance: every thread's results must equal (bitwise) the
// results of the same calls made one at a time.
#include <algorithm>
#include <thread>

#include "test_harness.hpp"

namespace dtest {
namespace {

using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;

struct Job : LayerViews<B> {
  Job(const ProblemShape& s, std::uint64_t seed) : LayerViews<B>(s, seed) {}
  void run(const dilated::Plan<B::exec>& plan, const B::exec& space) {
    plan.forward(space, q, k, v, out, lse);
    plan.backward(space, q, k, v, out, lse, dout, dq, dk, dv);
    space.fence();
  }
  std::vector<double> result() const {
    std::vector<double> r;
    for (const B::View4& t : {out, dq, dk, dv}) {
      auto x = from_view(t);
      r.insert(r.end(), x.begin(), x.end());
    }
    auto l = lse_from_view(lse);
    r.insert(r.end(), l.begin(), l.end());
    return r;
  }
};

TEST(Concurrency, OnePlanManyHostThreads) {
  const ProblemShape s{1, 128, 3, 16};
  AttentionConfig c = make_config({{32, 1}, {64, 2}, {128, 4}}, true);
  c.dropout_p = 0.1;  // the counter-based RNG has no state to share
  const dilated::Plan<B::exec> plan(c, s);
  const int jobs_per_thread = 6;
  const int threads = 4;
  std::vector<Job> jobs;
  for (int i = 0; i < threads * jobs_per_thread; ++i) jobs.emplace_back(s, 100 + 10 * i);
  std::vector<std::vector<double>> expected;
  for (Job& j : jobs) {
    j.run(plan, B::exec());
    expected.push_back(j.result());
    for (const B::View4& t : {j.out, j.dq, j.dk, j.dv}) poison(t);
    poison(j.lse);
  }

#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
  // Kokkos 3.x: OpenMP::partition_master runs one host thread per partition,
  // each with its own OpenMP instance - but only with nested OpenMP on;
  // otherwise it runs everything as one partition, and this test would be
  // sequential (as it was before issue 8 noticed).
  omp_set_max_active_levels(2);
  int partitions = 0;
  Kokkos::OpenMP::partition_master(
      [&](int id, int n) {
        if (id == 0) partitions = n;
        for (int i = id; i < static_cast<int>(jobs.size()); i += n) jobs[i].run(plan, B::exec());
      },
      threads, 1);
  EXPECT_EQ(partitions, std::min(threads, Kokkos::OpenMP().concurrency()))
      << "the host threads did not run concurrently";
#elif defined(KOKKOS_ENABLE_OPENMP)
  // Kokkos 4+: independent instances from partition_space, one std::thread each.
  // partition_space aborts when a partition would get no thread, so ask for at
  // most one per pool thread (3.x's partition_master clamps the same way).
  const int parts = std::min(threads, Kokkos::OpenMP().concurrency());
  auto instances =
      Kokkos::Experimental::partition_space(Kokkos::OpenMP(), std::vector<int>(parts, 1));
  std::vector<std::thread> pool;
  for (int t = 0; t < parts; ++t)
    pool.emplace_back([&, t] {
      for (int i = t; i < static_cast<int>(jobs.size()); i += parts) jobs[i].run(plan, instances[t]);
    });
  for (auto& th : pool) th.join();
#else
  // Serial only: Kokkos 4.2+ Serial instances made with Kokkos::NewInstance
  // are independent; before that there is one.
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
#if KOKKOS_VERSION >= 40200
      const B::exec space(Kokkos::NewInstance{});  // not shared
#else
      const B::exec space;
#endif
      for (int i = t; i < static_cast<int>(jobs.size()); i += threads) jobs[i].run(plan, space);
    });
  for (auto& th : pool) th.join();
#endif

  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto got = jobs[i].result();
    ASSERT_EQ(got.size(), expected[i].size());
    EXPECT_EQ(std::memcmp(got.data(), expected[i].data(), got.size() * sizeof(double)), 0)
        << "job " << i << " differs from its sequential result";
  }
}

}  // namespace
}  // namespace dtest
