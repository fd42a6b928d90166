// The MPI transport's progress thread (issue 8: also run under TSan, see the
// `tsan` preset): real ranks under `mpirun -np 2`, never a mocked
// communicator.
//  - MpiCommunicator with the thread: ring exchanges of every size class
//    (empty, eager, rendezvous, over a MiB), two transfers open at once,
//    one-sided halves, while the caller computes; every byte arrives, nothing
//    outside the receive range is written, and the send buffers may be
//    rewritten as soon as wait() returns.
//  - Communicators destroyed with transfers still open complete them first.
//  - SeqParallelPlan forward + backward with the thread, on the OpenMP (or
//    default host) backend: bitwise equal to the same plan on the synchronous
//    transport, within float tolerance of the float64 reference (also with
//    the earlier backward schedule, set_overlap_accumulator_return(false)),
//    and repeated calls give the same bits.
//  - Host staging (device buffers through host blocks, for MPI without CUDA
//    awareness) with a copier that treats chosen host buffers as device
//    memory: bytes arrive, staged receives land only at wait(), blocks go
//    back to the pool, and SeqParallelPlan gives the direct transport's bits.
#include <algorithm>
#include <cstring>
#include <thread>

#include "dist_harness.hpp"
#include "memory/host_resource.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

namespace dtest {
namespace {

using dilated::dist::Layout;
using dilated::dist::MpiCommunicator;

MpiCommunicator::Options with_thread(bool on = true) {
  MpiCommunicator::Options o;
  o.progress_thread = on;
  return o;
}

// The byte that rank `from` sends as byte i of message `tag` in round `round`.
unsigned char pattern(int from, int tag, int round, std::size_t i) {
  std::uint64_t h = (static_cast<std::uint64_t>(from) * 1000003u + static_cast<unsigned>(tag)) *
                        2654435761u +
                    static_cast<std::uint64_t>(round) * 40503u + i * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return static_cast<unsigned char>(h * 0xBF58476D1CE4E5B9ull >> 56);
}
void fill(std::vector<unsigned char>& buf, std::size_t n, int from, int tag, int round) {
  for (std::size_t i = 0; i < n; ++i) buf[i] = pattern(from, tag, round, i);
}
// Index of the first byte of buf[0, n) that is not rank `from`'s message, or
// n; the guard bytes after n must still be 0xEE.
std::size_t first_bad(const std::vector<unsigned char>& buf, std::size_t n, int from, int tag,
                      int round) {
  for (std::size_t i = 0; i < n; ++i)
    if (buf[i] != pattern(from, tag, round, i)) return i;
  for (std::size_t i = n; i < buf.size(); ++i)
    if (buf[i] != 0xEE) return i;
  return n;
}

// Work for the caller while transfers are open (a host kernel through Kokkos,
// as the ring's compute steps are).
double busy_kernel(int round) {
  double sum = 0;
  Kokkos::parallel_reduce(
      "busy", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, 20000),
      KOKKOS_LAMBDA(int i, double& s) { s += 1.0 / (1.0 + i + round); }, sum);
  return sum;
}

TEST(MpiProgressThread, RingExchangesDeliverEveryByteWhileTheCallerComputes) {
  int level = 0;
  MPI_Query_thread(&level);
  ASSERT_EQ(level, MPI_THREAD_MULTIPLE) << "test_main_mpi asks for MPI_THREAD_MULTIPLE";
  MpiCommunicator comm(MPI_COMM_WORLD, with_thread());
  const int rank = comm.rank(), P = comm.size();
  const int next = (rank + 1) % P, prev = (rank + P - 1) % P;
  constexpr std::size_t kGuard = 64;
  // Empty, eager, just past OpenMPI's eager limits, rendezvous, > 1 MiB.
  for (const std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(13), std::size_t(4096),
                              std::size_t(65536 + 3), std::size_t(1) << 20,
                              (std::size_t(3) << 20) + 5}) {
    SCOPED_TRACE("message of " + std::to_string(n) + " bytes, rank " + std::to_string(rank));
    std::vector<unsigned char> send_a(n + kGuard), send_b(n + kGuard);
    std::vector<unsigned char> recv_a(n + kGuard), recv_b(n + kGuard), recv_c(n + kGuard);
    for (int round = 0; round < 3; ++round) {
      fill(send_a, n, rank, 1, round);
      fill(send_b, n, rank, 2, round);
      for (auto* r : {&recv_a, &recv_b, &recv_c}) std::fill(r->begin(), r->end(), 0xEE);
      // Two transfers open at once (the backward's K/V prefetch and
      // accumulator pass), opposite directions round the ring.
      comm.start_exchange(send_a.data(), n, next, recv_a.data(), n, prev);
      comm.start_exchange(send_b.data(), n, prev, recv_b.data(), n, next);
      EXPECT_GT(busy_kernel(round), 0.0);
      comm.wait();
      EXPECT_EQ(first_bad(recv_a, n, prev, 1, round), n) << "from the previous rank, round " << round;
      EXPECT_EQ(first_bad(recv_b, n, next, 2, round), n) << "from the next rank, round " << round;
      // One-sided halves: rank 0 only sends, rank 1 only receives, the rest
      // start nothing. The send buffer is rewritten right after wait().
      fill(send_a, n, rank, 3, round);
      comm.start_exchange(send_a.data(), n, rank == 0 && P > 1 ? 1 : -1, recv_c.data(), n,
                          rank == 1 ? 0 : -1);
      comm.wait();
      std::fill(send_a.begin(), send_a.end(), 0);  // free to reuse now
      if (rank == 1)
        EXPECT_EQ(first_bad(recv_c, n, 0, 3, round), n) << "one-sided, round " << round;
      else
        EXPECT_TRUE(std::all_of(recv_c.begin(), recv_c.end(), [](unsigned char c) { return c == 0xEE; }))
            << "a rank that receives nothing had its buffer written";
    }
  }
  comm.wait();  // nothing open: returns at once
}

// The destructor completes transfers still open (with and without the thread),
// and communicators come and go repeatedly (thread start/stop).
TEST(MpiProgressThread, DestructorCompletesOpenTransfers) {
  const int rank = dtest::world_rank(), P = dtest::world_size();
  const std::size_t n = (std::size_t(1) << 20) + 7;  // rendezvous
  for (int round = 0; round < 6; ++round) {
    const bool thread = round % 2 == 0;
    std::vector<unsigned char> send(n), recv(n, 0xEE);
    fill(send, n, rank, 4, round);
    {
      MpiCommunicator comm(MPI_COMM_WORLD, with_thread(thread));
      comm.start_exchange(send.data(), n, (rank + 1) % P, recv.data(), n, (rank + P - 1) % P);
      // no wait(): the destructor must finish the transfer
    }
    EXPECT_EQ(first_bad(recv, n, (rank + P - 1) % P, 4, round), n)
        << (thread ? "with" : "without") << " the progress thread, round " << round;
  }
}

struct ProgressCase {
  AttentionConfig config;
  ProblemShape shape;
  Layout layout;
  const char* what;
};

std::vector<ProgressCase> progress_cases(int P) {
  const std::int64_t l = 24, N = l * P;
  std::vector<ProgressCase> cs;
  cs.push_back({make_config({{8, 1}, {24, 2}, {N, 3}}), {2, N, 3, 16}, Layout::Contiguous,
                "LongNet, local + all-rank branches"});
  cs.push_back({make_config({{12, 1}, {N, 2}}, true), {1, N, 2, 16}, Layout::Contiguous,
                "causal, contiguous"});
  cs.push_back({make_config({{4, 1}, {12, 2}, {N, 3}}, true), {1, N, 3, 16}, Layout::Zigzag,
                "causal, zigzag"});
  // The only branch is cross-rank: its own block is computed in two halves
  // around the final accumulator return.
  cs.push_back({make_config({{N, 1}}, true), {1, N, 2, 16}, Layout::Contiguous,
                "causal dense (own block split around the return)"});
  if (P % 2 == 0)
    cs.push_back({make_config({{6, 1}, {48, 2}, {N, 4}}), {1, N, 4, 16}, Layout::Contiguous,
                  "a branch spanning 2 ranks (g = 2) and one spanning all"});
  return cs;
}

TEST(MpiProgressThread, SeqParallelForwardBackwardEqualTheSynchronousTransport) {
  using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;
  const int rank = world_rank(), P = world_size();
  std::uint64_t seed = 77000;
  for (const ProgressCase& c : progress_cases(P)) {
    SCOPED_TRACE(std::string(c.what) + ": " + case_name(c.config, c.shape) + ", rank " +
                 std::to_string(rank) + " of " + std::to_string(P));
    const ProblemShape& g = c.shape;
    seed += 10;
    const auto qg = random_vector(numel(g), seed), kg = random_vector(numel(g), seed + 1),
               vg = random_vector(numel(g), seed + 2), dog = random_vector(numel(g), seed + 3);
    // Results of forward + backward as one vector: out, lse, dq, dk, dv.
    auto run = [&](bool thread, int calls, bool overlap_return = true) {
      MpiCommunicator comm(MPI_COMM_WORLD, with_thread(thread));
      dilated::dist::SeqParallelPlan<B::exec> plan(c.config, g, comm, c.layout);
      plan.set_overlap_accumulator_return(overlap_return);
      const ProblemShape s = plan.local_shape();
      const auto wins = plan.local_windows();
      const std::int64_t l = s.seq_len;
      auto q = to_view<B>(shard_of(qg, g, wins, l), s), k = to_view<B>(shard_of(kg, g, wins, l), s),
           v = to_view<B>(shard_of(vg, g, wins, l), s),
           dout = to_view<B>(shard_of(dog, g, wins, l), s);
      B::View4 out("out", s.batch, l, s.heads, s.head_dim), dq("dq", s.batch, l, s.heads, s.head_dim),
          dk("dk", s.batch, l, s.heads, s.head_dim), dv("dv", s.batch, l, s.heads, s.head_dim);
      B::ViewL lse("lse", s.batch, s.heads, l);
      std::vector<std::vector<double>> results;
      for (int i = 0; i < calls; ++i) {
        for (const auto& t : {out, dq, dk, dv}) poison(t);
        poison(lse);
        plan.forward(q, k, v, out, lse);
        plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
        std::vector<double> r = from_view(out);
        for (const auto& part : {lse_from_view(lse), from_view(dq), from_view(dk), from_view(dv)})
          r.insert(r.end(), part.begin(), part.end());
        results.push_back(std::move(r));
      }
      return results;
    };
    const auto threaded = run(true, 2);
    const auto plain = run(false, 1);
    // The earlier backward schedule (each branch waits for its accumulator
    // return; branches in their order): the same sums in another order.
    const auto eager = run(false, 1, false);
    ASSERT_EQ(threaded[0].size(), plain[0].size());
    // Same ring, same order of additions: the transport must not change a bit.
    EXPECT_TRUE(threaded[0] == plain[0]) << "progress thread changed the results";
    EXPECT_TRUE(threaded[1] == threaded[0]) << "a repeated call gave other results";

    // And both are right: the float64 reference on the gathered sequence.
    auto rounded = [](std::vector<double> x) {
      for (double& e : x) e = static_cast<double>(static_cast<float>(e));
      return x;
    };
    const auto qr = rounded(qg), kr = rounded(kg), vr = rounded(vg), dor = rounded(dog);
    std::vector<double> rout(numel(g)), rlse(static_cast<std::size_t>(g.batch * g.heads * g.seq_len));
    std::vector<double> rdq(numel(g)), rdk(numel(g)), rdv(numel(g));
    dilated::reference::forward(c.config, g, qr.data(), kr.data(), vr.data(), rout.data(),
                                rlse.data());
    dilated::reference::backward(c.config, g, qr.data(), kr.data(), vr.data(), dor.data(),
                                 rdq.data(), rdk.data(), rdv.data());
    dilated::dist::ShardLayout lay(c.config, g, P, c.layout);
    const auto wins = lay.windows(rank);
    const std::int64_t l = lay.local_len();
    const std::size_t n4 = static_cast<std::size_t>(g.batch * l * g.heads * g.head_dim);
    const std::size_t nl = static_cast<std::size_t>(g.batch * g.heads * l);
    for (const auto* got : {&threaded[0], &eager[0]}) {
      const char* which = got == &eager[0] ? " (earlier backward schedule)" : "";
      auto part = [&](std::size_t off, std::size_t n) {
        return std::vector<double>(got->begin() + static_cast<std::ptrdiff_t>(off),
                                   got->begin() + static_cast<std::ptrdiff_t>(off + n));
      };
      ASSERT_EQ(got->size(), 4 * n4 + nl);
      EXPECT_LE(scaled_error(part(0, n4), shard_of(rout, g, wins, l)), Tol<float>::out) << "out" << which;
      EXPECT_LE(scaled_error(part(n4, nl), lse_shard_of(rlse, g, wins, l)), Tol<float>::lse)
          << "lse" << which;
      EXPECT_LE(scaled_error(part(n4 + nl, n4), shard_of(rdq, g, wins, l)), Tol<float>::grad)
          << "dq" << which;
      EXPECT_LE(scaled_error(part(2 * n4 + nl, n4), shard_of(rdk, g, wins, l)), Tol<float>::grad)
          << "dk" << which;
      EXPECT_LE(scaled_error(part(3 * n4 + nl, n4), shard_of(rdv, g, wins, l)), Tol<float>::grad)
          << "dv" << which;
    }
  }
}

// --- Host staging (MPI without CUDA awareness), on the CPU -----------------
// A copier that treats registered host ranges (or every buffer) as "device"
// memory: memcpy, counted. The CUDA build's copier is the same interface over
// cudaPointerGetAttributes / cudaMemcpy.
class FakeDeviceCopier final : public dilated::dist::StagingCopier {
 public:
  bool all = false;
  std::vector<std::pair<const unsigned char*, std::size_t>> device;
  std::size_t to_host_calls = 0, to_device_calls = 0;
  void add(const std::vector<unsigned char>& v) { device.emplace_back(v.data(), v.size()); }
  bool needs_staging(const void* p) const override {
    if (all) return true;
    const auto* c = static_cast<const unsigned char*>(p);
    for (const auto& r : device)
      if (c >= r.first && c < r.first + r.second) return true;
    return false;
  }
  void to_host(void* host, const void* dev, std::size_t n) override {
    std::memcpy(host, dev, n);
    ++to_host_calls;
  }
  void to_device(void* dev, const void* host, std::size_t n) override {
    std::memcpy(dev, host, n);
    ++to_device_calls;
  }
};

TEST(MpiHostStaging, DeviceBuffersTravelThroughHostBlocks) {
  using namespace dilated::memory;
  const int rank = world_rank(), P = world_size();
  const int next = (rank + 1) % P, prev = (rank + P - 1) % P;
  for (const bool thread : {false, true}) {
    SCOPED_TRACE(thread ? "with the progress thread" : "without the progress thread");
    HostResource host;
    PoolResource pool(host);
    TrackingResource tracked(pool);
    FakeDeviceCopier copier;
    MpiCommunicator::Options opt = with_thread(thread);
    opt.staging_copier = &copier;
    opt.staging_memory = &tracked;
    MpiCommunicator comm(MPI_COMM_WORLD, opt);
    EXPECT_TRUE(comm.host_staging());
    EXPECT_TRUE(comm.accepts_device_memory());
    for (const std::size_t n : {std::size_t(0), std::size_t(13), std::size_t(65536 + 3),
                                std::size_t(1) << 20}) {
      SCOPED_TRACE(std::to_string(n) + " bytes");
      std::vector<unsigned char> dsend(n + 64), drecv(n + 64, 0xEE), hrecv(n + 64, 0xEE),
          hsend(n + 64);
      copier.device.clear();
      copier.add(dsend);
      copier.add(drecv);
      fill(dsend, n, rank, 5, 0);
      fill(hsend, n, rank, 6, 0);
      const std::size_t th = copier.to_host_calls, td = copier.to_device_calls;
      // device -> device, and host -> host (not staged) at the same time
      comm.start_exchange(dsend.data(), n, next, drecv.data(), n, prev);
      comm.start_exchange(hsend.data(), n, prev, hrecv.data(), n, next);
      std::fill(dsend.begin(), dsend.end(), 0);  // the staged copy was taken at the start
      EXPECT_TRUE(std::all_of(drecv.begin(), drecv.end(), [](unsigned char c) { return c == 0xEE; }))
          << "a staged receive reached its device buffer before wait()";
      comm.wait();
      EXPECT_EQ(first_bad(drecv, n, prev, 5, 0), n) << "device buffer, via host blocks";
      EXPECT_EQ(first_bad(hrecv, n, next, 6, 0), n) << "host buffer, direct";
      EXPECT_EQ(copier.to_host_calls - th, n ? 1u : 0u);
      EXPECT_EQ(copier.to_device_calls - td, n ? 1u : 0u);
      EXPECT_EQ(tracked.stats().current, 0u) << "staging blocks not returned after wait()";
    }
    // Destroyed with a staged transfer open: the destructor completes it.
    const std::size_t n = (std::size_t(1) << 20) + 5;
    std::vector<unsigned char> dsend(n), drecv(n, 0xEE);
    copier.device.clear();
    copier.add(dsend);
    copier.add(drecv);
    fill(dsend, n, rank, 7, 1);
    {
      MpiCommunicator::Options o2 = opt;
      MpiCommunicator c2(MPI_COMM_WORLD, o2);
      c2.start_exchange(dsend.data(), n, next, drecv.data(), n, prev);
    }
    EXPECT_EQ(first_bad(drecv, n, prev, 7, 1), n) << "destructor with a staged receive open";
    EXPECT_EQ(tracked.stats().current, 0u);
    EXPECT_GT(pool.stats().allocations, 0u);
  }
}

#if !DILATED_ENABLE_CUDA
TEST(MpiHostStaging, CopierWithoutHostMemoryIsRejectedOnEveryRank) {
  FakeDeviceCopier copier;
  MpiCommunicator::Options opt;
  opt.staging_copier = &copier;  // and no staging_memory: no pinned upstream without CUDA
  std::string rule;
  try {
    MpiCommunicator comm(MPI_COMM_WORLD, opt);
  } catch (const dilated::Error& e) {
    rule = e.rule();
  }
  EXPECT_EQ(rule, "dist.host_staging");
}
#endif

// SeqParallelPlan over a transport that stages every buffer: bitwise the
// results of the direct transport (the same bytes arrive), every staging
// block back in the pool.
TEST(MpiHostStaging, SeqParallelPlanThroughStagingEqualsTheDirectTransport) {
  using B = Backend<Kokkos::DefaultHostExecutionSpace, float>;
  using namespace dilated::memory;
  const int P = world_size();
  std::uint64_t seed = 88000;
  for (const ProgressCase& c : progress_cases(P)) {
    SCOPED_TRACE(std::string(c.what) + ": " + case_name(c.config, c.shape));
    const ProblemShape& g = c.shape;
    seed += 10;
    HostResource host;
    PoolResource pool(host);
    TrackingResource tracked(pool);
    FakeDeviceCopier copier;
    copier.all = true;
    auto run = [&](bool staged, bool thread) {
      MpiCommunicator::Options opt = with_thread(thread);
      if (staged) {
        opt.staging_copier = &copier;
        opt.staging_memory = &tracked;
      }
      MpiCommunicator comm(MPI_COMM_WORLD, opt);
      dilated::dist::SeqParallelPlan<B::exec> plan(c.config, g, comm, c.layout);
      const ProblemShape s = plan.local_shape();
      const auto wins = plan.local_windows();
      const std::int64_t l = s.seq_len;
      auto shard = [&](std::uint64_t sd) {
        return to_view<B>(shard_of(random_vector(numel(g), sd), g, wins, l), s);
      };
      auto q = shard(seed), k = shard(seed + 1), v = shard(seed + 2), dout = shard(seed + 3);
      B::View4 out("out", s.batch, l, s.heads, s.head_dim), dq("dq", s.batch, l, s.heads, s.head_dim),
          dk("dk", s.batch, l, s.heads, s.head_dim), dv("dv", s.batch, l, s.heads, s.head_dim);
      B::ViewL lse("lse", s.batch, s.heads, l);
      plan.forward(q, k, v, out, lse);
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
      std::vector<double> r = from_view(out);
      for (const auto& part : {lse_from_view(lse), from_view(dq), from_view(dk), from_view(dv)})
        r.insert(r.end(), part.begin(), part.end());
      return r;
    };
    const auto direct = run(false, false);
    const auto staged = run(true, false);
    const auto staged_thread = run(true, true);
    EXPECT_TRUE(staged == direct) << "staging changed the results";
    EXPECT_TRUE(staged_thread == direct) << "staging with the progress thread changed the results";
    EXPECT_GT(copier.to_host_calls, 0u);
    EXPECT_GT(copier.to_device_calls, 0u);
    EXPECT_EQ(tracked.stats().current, 0u) << "staging blocks still out";
  }
}

// A deliberate race, run only by the TSan build's canary entry (disabled
// otherwise): proves that TSan is active in the ranks mpirun starts and that
// TSAN_OPTIONS reach them, so the clean run above means something.
int canary_counter = 0;
TEST(MpiProgressThread, DISABLED_TsanCanarySeededRace) {
  std::thread other([] { ++canary_counter; });
  ++canary_counter;  // unsynchronised with `other`
  other.join();
  EXPECT_GE(canary_counter, 1);
}

}  // namespace
}  // namespace dtest
