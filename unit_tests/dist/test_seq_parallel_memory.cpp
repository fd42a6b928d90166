// src/dist takes its exchange buffers and temporaries from the plan's
// workspace pool (src/memory): after the first forward + backward, repeated
// calls make no upstream allocation, reserve nothing more, give every block
// back, and compute the same result.
#include "dist_harness.hpp"
#include "memory/host_resource.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

namespace dtest {
namespace {

using namespace dilated::memory;

TEST(SeqParallelSteadyState, RepeatedCallsAllocateNothingUpstream) {
  using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;
  const int P = world_size();
  const std::int64_t l = 48, N = l * P;
  // A local branch (w = 8) and, with P > 1, one spanning every rank (w = N).
  const AttentionConfig config = make_config({{8, 1}, {N, 2}}, true);
  const ProblemShape g{1, N, 2, 16};
  HostResource host;
  PoolResource pool(host);
  TrackingResource tracked(pool);
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  dilated::dist::SeqParallelPlan<B::exec> plan(config, g, comm, dilated::dist::Layout::Contiguous,
                                               &tracked);
  const ProblemShape s = plan.local_shape();
  const auto wins = plan.local_windows();
  auto shard = [&](std::uint64_t seed) {
    return to_view<B>(shard_of(random_vector(numel(g), seed), g, wins, l), s);
  };
  auto q = shard(1), k = shard(2), v = shard(3), dout = shard(4);
  B::View4 out("out", 1, l, 2, 16), dq("dq", 1, l, 2, 16), dk("dk", 1, l, 2, 16), dv("dv", 1, l, 2, 16);
  B::ViewL lse("lse", 1, 2, l);
  auto step = [&] {
    plan.forward(q, k, v, out, lse);
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
    Kokkos::fence();
  };

  step();  // warm-up: the pool obtains its segments
  const PoolStats warm = pool.stats();
  EXPECT_GE(warm.upstream_allocations, 1u);
  const auto first_dk = from_view(dk);
  constexpr int kSteps = 3;
  for (int i = 0; i < kSteps; ++i) step();
  const PoolStats now = pool.stats();
  EXPECT_EQ(now.upstream_allocations, warm.upstream_allocations) << "steady state called the upstream";
  EXPECT_EQ(now.reserved, warm.reserved);
  EXPECT_GT(now.allocations, warm.allocations) << "the calls take their buffers from the pool";
  EXPECT_EQ(now.deallocations, now.allocations) << "and give them all back";
  EXPECT_EQ(tracked.stats().current, 0u);
  EXPECT_EQ(from_view(dk), first_dk) << "same inputs, same gradients";
}

}  // namespace
}  // namespace dtest
