// Sequence parallelism under mpirun (-np 2, 3, 4): every rank's shard of the
// forward and backward equals the float64 reference on the gathered sequence,
// for dense, causal and LongNet configs whose branches are local, span some
// ranks or span all of them, in the contiguous and zigzag layouts.
#include "dist_harness.hpp"

namespace dtest {
namespace {

using dilated::dist::Layout;

template <class B>
class SeqParallel : public ::testing::Test {};
TYPED_TEST_SUITE(SeqParallel, HostBackends);

template <class B>
void check_case(const DistCase& c, std::uint64_t seed, bool progress_thread = false,
                bool cuda_aware = false) {
  using T = typename B::value;
  const int rank = world_rank(), P = world_size();
  SCOPED_TRACE(std::string(c.what) + ": " + case_name(c.config, c.shape) +
               (c.layout == Layout::Zigzag ? " zigzag" : " contiguous") + " on " +
               B::exec::name() + ", rank " + std::to_string(rank) + " of " + std::to_string(P));
  const ProblemShape& g = c.shape;
  // Every rank draws the same gathered inputs and keeps its shard.
  const auto qg = random_vector(numel(g), seed), kg = random_vector(numel(g), seed + 1),
             vg = random_vector(numel(g), seed + 2), dog = random_vector(numel(g), seed + 3);

  dilated::dist::MpiCommunicator::Options opt;
  opt.progress_thread = progress_thread;
  opt.cuda_aware = cuda_aware;
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD, opt);
  dilated::dist::SeqParallelPlan<typename B::exec> plan(c.config, g, comm, c.layout);
  const ProblemShape s = plan.local_shape();
  const auto wins = plan.local_windows();
  const std::int64_t l = s.seq_len;
  std::vector<double> qd, kd, vd, dod;
  auto q = to_view<B>(shard_of(qg, g, wins, l), s, &qd, "q");
  auto k = to_view<B>(shard_of(kg, g, wins, l), s, &kd, "k");
  auto v = to_view<B>(shard_of(vg, g, wins, l), s, &vd, "v");
  auto dout = to_view<B>(shard_of(dog, g, wins, l), s, &dod, "dout");
  typename B::View4 out("out", s.batch, l, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, l);
  typename B::View4 dq("dq", s.batch, l, s.heads, s.head_dim);
  typename B::View4 dk("dk", s.batch, l, s.heads, s.head_dim);
  typename B::View4 dv("dv", s.batch, l, s.heads, s.head_dim);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  poison(lse);

  plan.forward(q, k, v, out, lse);
  plan.backward(q, k, v, out, lse, dout, dq, dk, dv);

  // The float64 reference on the gathered (dtype-rounded) sequence.
  auto rounded = [](std::vector<double> x) {
    for (double& e : x) e = static_cast<double>(static_cast<T>(e));
    return x;
  };
  const auto qr = rounded(qg), kr = rounded(kg), vr = rounded(vg), dor = rounded(dog);
  std::vector<double> rout(numel(g)), rlse(g.batch * g.heads * g.seq_len);
  dilated::reference::forward(c.config, g, qr.data(), kr.data(), vr.data(), rout.data(),
                              rlse.data());
  std::vector<double> rdq(numel(g)), rdk(numel(g)), rdv(numel(g));
  dilated::reference::backward(c.config, g, qr.data(), kr.data(), vr.data(), dor.data(),
                               rdq.data(), rdk.data(), rdv.data());
  EXPECT_LE(scaled_error(from_view(out), shard_of(rout, g, wins, l)), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(lse), lse_shard_of(rlse, g, wins, l)), Tol<T>::lse)
      << "lse";
  EXPECT_LE(scaled_error(from_view(dq), shard_of(rdq, g, wins, l)), Tol<T>::grad) << "dq";
  EXPECT_LE(scaled_error(from_view(dk), shard_of(rdk, g, wins, l)), Tol<T>::grad) << "dk";
  EXPECT_LE(scaled_error(from_view(dv), shard_of(rdv, g, wins, l)), Tol<T>::grad) << "dv";
}

TYPED_TEST(SeqParallel, ShardsMatchFloat64ReferenceOnGatheredSequence) {
  std::uint64_t seed = 31000;
  for (const DistCase& c : dist_cases(world_size())) check_case<TypeParam>(c, seed += 10);
}

// With the MPI progress thread (transfers complete while kernels run) the
// results are the same.
TEST(SeqParallelProgressThread, ShardsMatchFloat64Reference) {
  int level = 0;
  MPI_Query_thread(&level);
  ASSERT_EQ(level, MPI_THREAD_MULTIPLE) << "test_main_mpi asks for MPI_THREAD_MULTIPLE";
  std::uint64_t seed = 52000;
  for (const DistCase& c : dist_cases(world_size()))
    check_case<Backend<Kokkos::DefaultHostExecutionSpace, float>>(c, seed += 10, true);
}

// The MPI transport with device Views (CUDA-aware MPI), for the GPU machine:
// `mpirun -np 2` on one GPU exchanges device buffers between two ranks.
TEST(SeqParallelDevice, MpiWithDeviceViews) {
#if defined(KOKKOS_ENABLE_CUDA)
  bool aware = false;
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  aware = MPIX_Query_cuda_support() == 1;
#endif
  if (!aware) GTEST_SKIP() << "this MPI is not CUDA-aware";
  std::uint64_t seed = 61000;
  for (const DistCase& c : dist_cases(world_size()))
    check_case<Backend<Kokkos::Cuda, float>>(c, seed += 10, false, true);
#else
  GTEST_SKIP() << "Kokkos without CUDA";
#endif
}

// Device Views over an MPI that is not told it is CUDA-aware: the transport
// stages every transfer through pinned host blocks (host_staging.hpp), with
// and without the progress thread. Needs a library built with
// DILATED_ENABLE_CUDA (the staging copier is cudaMemcpy) and a CUDA Kokkos.
TEST(SeqParallelDevice, MpiHostStagingWithDeviceViews) {
#if defined(KOKKOS_ENABLE_CUDA) && DILATED_ENABLE_CUDA
  std::uint64_t seed = 63000;
  for (bool progress : {false, true})
    for (const DistCase& c : dist_cases(world_size()))
      check_case<Backend<Kokkos::Cuda, float>>(c, seed += 10, progress, false);
#else
  GTEST_SKIP() << "needs a CUDA Kokkos and DILATED_ENABLE_CUDA";
#endif
}

// The cases above cover cross-rank branches: make sure the test would notice
// if they were not (guards against a layout that silently made everything local).
TEST(SeqParallelLayout, CasesIncludeCrossRankBranches) {
  const int P = world_size();
  int cross = 0, local = 0;
  for (const DistCase& c : dist_cases(P)) {
    dilated::dist::ShardLayout lay(c.config, c.shape, P, c.layout);
    for (int i = 0; i < lay.num_branches(); ++i)
      (lay.branch(i).cross_rank ? cross : local) += 1;
  }
  EXPECT_GT(cross, 0);
  EXPECT_GT(local, 0);
  dilated::dist::ShardLayout two(make_config({{48, 2}}), {1, 24 * 4, 1, 16}, 4,
                                 Layout::Contiguous);
  EXPECT_EQ(two.branch(0).group_size, 2);
  EXPECT_EQ(two.group_first(0, 3), 2);
}

}  // namespace
}  // namespace dtest
