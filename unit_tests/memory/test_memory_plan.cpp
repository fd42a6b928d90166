// The attention plan takes backward's workspace from the memory layer: after
// the first call, repeated calls allocate nothing from the upstream, every
// workspace is returned, and results equal those of the default pool.

#include <algorithm>
#include <cstring>
#include <utility>

#include "../test_harness.hpp"
#include "memory/host_resource.hpp"
#include "memory/kokkos_workspace.hpp"
#include "memory/numa.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"
#include "memory/errors.hpp"

namespace dtest {
namespace {

using namespace dilated::memory;
using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;

struct Tensors : LayerViews<B> {
  explicit Tensors(const ProblemShape& s) : LayerViews<B>(s, 1) {}
  void step(const dilated::Plan<B::exec>& plan) {
    plan.forward(q, k, v, out, lse);
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
    Kokkos::fence();
  }
};

TEST(MemoryPlan, SteadyStateBackwardAllocatesNothing) {
  const ProblemShape shape{2, 512, 3, 32};
  const AttentionConfig config = make_config({{128, 1}, {256, 2}, {512, 4}}, true);
  HostResource host;
  PoolResource pool(host);
  TrackingResource tracked(pool);
  const dilated::Plan<B::exec> plan(config, shape, &tracked);
  EXPECT_EQ(&plan.workspace_resource(), &tracked);
  Tensors t(shape);

  t.step(plan);  // warm-up: the pool obtains its segment
  const PoolStats warm = pool.stats();
  EXPECT_EQ(warm.upstream_allocations, 1u);
  EXPECT_EQ(warm.allocations, 1u);  // delta: B * H * N floats
  EXPECT_EQ(tracked.stats().peak, sizeof(float) * 2 * 3 * 512);
  const auto first_dq = from_view(t.dq);

  constexpr int kSteps = 5;
  for (int i = 0; i < kSteps; ++i) t.step(plan);
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.upstream_allocations, warm.upstream_allocations) << "steady state called the upstream";
  EXPECT_EQ(s.reserved, warm.reserved);
  EXPECT_EQ(s.allocations, warm.allocations + kSteps) << "every backward takes its workspace here";
  EXPECT_EQ(s.deallocations, s.allocations) << "and gives it back";
  EXPECT_EQ(tracked.stats().current, 0u);
  EXPECT_EQ(host.bytes_held(), warm.reserved);
  EXPECT_EQ(from_view(t.dq), first_dq) << "same inputs, same gradients";

  // The default plan (process-wide host pool) computes the same.
  const dilated::Plan<B::exec> default_plan(config, shape);
  WorkspaceStack& stack = workspace_stack<B::mem>();
  EXPECT_EQ(&default_plan.workspace_resource(), &stack.resource());
  Tensors u(shape);
  u.step(default_plan);
  const std::uint64_t upstream_after_first = stack.pool->stats().upstream_allocations;
  u.step(default_plan);
  u.step(default_plan);
  EXPECT_EQ(stack.pool->stats().upstream_allocations, upstream_after_first);
  EXPECT_EQ(stack.tracking->stats().current, 0u);
  EXPECT_EQ(from_view(u.dq), first_dq);
}

// First touch by the threads of an execution space: every page becomes
// resident, on a NUMA node hwloc can name.
TEST(MemoryPlan, TouchPagesMakesEveryPageResident) {
  NumaHostResource first_touch(NumaOptions{-1, true, false});
  EXPECT_FALSE(first_touch.binds());
  const std::size_t bytes = 128 * 4096;
  void* p = first_touch.allocate(bytes, 4096);
  touch_pages(Kokkos::DefaultHostExecutionSpace(), p, bytes);
  Kokkos::fence();
  const PagePlacement where = page_placement(p, bytes);
  EXPECT_EQ(where.pages, 128u);
  if (where.known) {
    EXPECT_EQ(where.not_resident, 0u) << where.to_string();
    std::size_t placed = 0;
    for (std::size_t n : where.per_node) placed += n;
    EXPECT_EQ(placed, where.sampled) << where.to_string();
  }
  first_touch.deallocate(p, bytes, 4096);
}

// A pooled View: shaped over a pool block, returned when it goes out of scope.
TEST(MemoryPlan, PooledViewIsAViewOverAPoolBlock) {
  HostResource host;
  PoolResource pool(host);
  using Exec = Kokkos::DefaultHostExecutionSpace;
  {
    auto buf = pooled_view<double***>(Exec(), pool, 3, 4, 5);
    EXPECT_EQ(buf.view.extent(0), 3u);
    EXPECT_EQ(buf.view.extent(2), 5u);
    EXPECT_EQ(static_cast<void*>(buf.view.data()), buf.block.data());
    EXPECT_EQ(buf.block.bytes(), 3 * 4 * 5 * sizeof(double));
    Kokkos::deep_copy(buf.view, 2.5);
    EXPECT_EQ(buf.view(2, 3, 4), 2.5);
    EXPECT_EQ(pool.stats().live_blocks, 1u);
  }
  EXPECT_EQ(pool.stats().live_blocks, 0u);
  EXPECT_EQ(pool.stats().deallocations, 1u);
}

// Hands out blocks filled with a pattern and fails requests above `limit`;
// at the failure it records whether a block it handed out earlier was
// already written (a kernel ran on it).
class PatternedFailingResource : public MemoryResource {
 public:
  PatternedFailingResource(MemoryResource& up, std::size_t limit) : up_(up), limit_(limit) {}
  std::string name() const override { return "patterned-failing"; }
  MemoryKind kind() const override { return up_.kind(); }
  std::size_t max_alignment() const override { return up_.max_alignment(); }
  std::size_t max_bytes() const override { return up_.max_bytes(); }
  bool failed = false, written_before_failure = false;

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment, Stream s) override {
    if (bytes > limit_) {
      failed = true;
      for (const auto& b : live_)
        for (std::size_t i = 0; i < b.second; ++i)
          written_before_failure |= static_cast<unsigned char*>(b.first)[i] != kPattern;
      throw OutOfMemory("test: request above the limit");
    }
    void* p = up_.allocate(bytes, alignment, s);
    std::memset(p, kPattern, bytes);
    live_.emplace_back(p, bytes);
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment, Stream s) override {
    live_.erase(std::find(live_.begin(), live_.end(), std::make_pair(p, bytes)));
    up_.deallocate(p, bytes, alignment, s);
  }

 private:
  static constexpr unsigned char kPattern = 0xAB;
  MemoryResource& up_;
  std::size_t limit_;
  std::vector<std::pair<void*, std::size_t>> live_;
};

// Random inputs and unwritten outputs of one shape in 16-bit storage
// (emulated bf16 on the host).
using B16 = Backend<Kokkos::DefaultHostExecutionSpace, EmulatedBf16>;
using Tensors16 = LayerViews<B16>;

// 16-bit storage: backward takes its float gradient accumulators (3 tensors
// of floats) before launching anything. When that allocation fails, no
// kernel may have run on an earlier block: the block would go back to its
// pool (not stream-ordered) while a GPU kernel still reads it. (Before the
// fix, delta was allocated and computed first.)
TEST(MemoryPlan, Storage16BackwardAllocatesBeforeItLaunches) {
  const ProblemShape shape{1, 64, 2, 16};
  const AttentionConfig config = make_config({{32, 1}, {64, 2}}, true);
  HostResource host;
  // Fails only the accumulators (two chunks of numel floats: one chunk covers
  // N = 64); delta (B * H * N floats) fits.
  PatternedFailingResource failing(host, numel(shape) * sizeof(float));
  const dilated::Plan<B16::exec> plan(config, shape, &failing);
  Tensors16 t(shape, 11);
  plan.forward(t.q, t.k, t.v, t.out, t.lse);
  EXPECT_THROW(plan.backward(t.q, t.k, t.v, t.out, t.lse, t.dout, t.dq, t.dk, t.dv), OutOfMemory);
  Kokkos::fence();
  EXPECT_TRUE(failing.failed) << "the accumulators were not requested: the test no longer applies";
  EXPECT_FALSE(failing.written_before_failure)
      << "a kernel wrote an earlier workspace block before the accumulators were allocated";
}

// 16-bit storage, several branches: forward merges in a float accumulator of
// half_merge_rows() query rows, not of the whole sequence (B*N*H*D floats, two
// thirds of the Q+K+V bytes), and backward's float gradient accumulators are
// two such chunks (dq of a query chunk, then dk and dv of a key chunk), not
// three whole-sequence tensors (twice the Q+K+V bytes). Resources that refuse
// anything larger must still serve the calls.
TEST(MemoryPlan, Storage16WorkspaceIsChunked) {
  const ProblemShape shape{1, 16384, 2, 16};
  const AttentionConfig config = make_config({{2048, 1}, {4096, 2}}, true);
  const std::int64_t rows = dilated::Plan<B16::exec>::half_merge_rows(shape.seq_len);
  ASSERT_EQ(rows, 4096);
  const std::size_t chunk = sizeof(float) * shape.batch * rows * shape.heads * shape.head_dim;
  Tensors16 t(shape, 21);
  HostResource host;
  PatternedFailingResource one_chunk(host, chunk), two_chunks(host, 2 * chunk);
  const dilated::Plan<B16::exec> forward_plan(config, shape, &one_chunk);
  EXPECT_NO_THROW(forward_plan.forward(t.q, t.k, t.v, t.out, t.lse));
  Kokkos::fence();
  EXPECT_FALSE(one_chunk.failed) << "forward asked for more than one chunk's float accumulator";
  const dilated::Plan<B16::exec> plan(config, shape, &two_chunks);
  EXPECT_NO_THROW(plan.backward(t.q, t.k, t.v, t.out, t.lse, t.dout, t.dq, t.dk, t.dv));
  Kokkos::fence();
  EXPECT_FALSE(two_chunks.failed) << "backward asked for more than two chunks of accumulators";
}

// Concurrent plan calls on the default pool are exercised by
// unit_tests/test_concurrency.cpp (one plan, several host threads, each
// backward taking its workspace from the process-wide host pool).

}  // namespace
}  // namespace dtest
