// The NCCL transport on one GPU (one rank): a ring step moves bytes (to
// itself), the validation reduction works, and SeqParallelPlan over NCCL
// matches the float64 reference. Compiled in CI against any Kokkos; the GPU
// cases run when Kokkos has CUDA and a device is present, and skip otherwise
// (with the reason printed). The multi-GPU run is issue 7.
#include <cuda_runtime.h>
#include <nccl.h>

#include "../test_harness.hpp"
#include "dist/nccl_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"

namespace dtest {
namespace {

#if defined(KOKKOS_ENABLE_CUDA)
using Exec = Kokkos::Cuda;
#else
using Exec = Kokkos::DefaultHostExecutionSpace;
#endif
constexpr bool kDeviceKokkos = !std::is_same<Exec::memory_space, Kokkos::HostSpace>::value;

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// One-rank NCCL communicator on the current device, destroyed at scope exit.
struct OneRankNccl {
  ncclComm_t comm = nullptr;
  OneRankNccl() {
    int dev = 0;
    cudaGetDevice(&dev);
    if (ncclCommInitAll(&comm, 1, &dev) != ncclSuccess) comm = nullptr;
  }
  ~OneRankNccl() {
    if (comm) ncclCommDestroy(comm);
  }
};

#define SKIP_WITHOUT_GPU()                                                    \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on the GPU machine"; \
  if (!kDeviceKokkos) GTEST_SKIP() << "Kokkos without CUDA: build against a CUDA Kokkos"

TEST(NcclOneRank, RingStepAndReduction) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on the GPU machine";
  OneRankNccl nc;
  ASSERT_NE(nc.comm, nullptr);
  dilated::dist::NcclCommunicator comm(nc.comm);
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  const std::int64_t in[3] = {-5, 7, 1ll << 40};
  std::int64_t lo[3] = {}, hi[3] = {};
  comm.allreduce_min_max(in, lo, hi, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(lo[i], in[i]) << i;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(hi[i], in[i]) << i;
  const std::size_t n = 1 << 20;
  std::vector<float> h(n), back(n, std::nanf(""));
  for (std::size_t i = 0; i < n; ++i) h[i] = static_cast<float>(i) * 0.5f - 3.0f;
  float *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&send), n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&recv), n * sizeof(float)), cudaSuccess);
  cudaMemcpy(send, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(recv, 0xff, n * sizeof(float));  // NaN poison
  comm.start_exchange(send, n * sizeof(float), 0, recv, n * sizeof(float), 0);
  comm.wait();
  cudaMemcpy(back.data(), recv, n * sizeof(float), cudaMemcpyDeviceToHost);
  EXPECT_EQ(std::memcmp(back.data(), h.data(), n * sizeof(float)), 0);
  cudaFree(send);
  cudaFree(recv);
}

template <class T>
void check_plan(const AttentionConfig& cfg, const ProblemShape& s, dilated::dist::Layout layout,
                std::uint64_t seed) {
  using B = Backend<Exec, T>;
  SCOPED_TRACE(case_name(cfg, s));
  OneRankNccl nc;
  ASSERT_NE(nc.comm, nullptr);
  dilated::dist::NcclCommunicator comm(nc.comm);
  dilated::dist::SeqParallelPlan<Exec> plan(cfg, s, comm, layout);
  // One rank: the shard is the whole sequence (the zigzag layout reorders it).
  std::vector<double> qg = random_vector(numel(s), seed), kg = random_vector(numel(s), seed + 1),
                      vg = random_vector(numel(s), seed + 2),
                      dog = random_vector(numel(s), seed + 3);
  auto reorder = [&](const std::vector<double>& g) {
    std::vector<double> out(g.size());
    const std::int64_t row = s.heads * s.head_dim;
    for (std::int64_t b = 0; b < s.batch; ++b)
      for (const auto& w : plan.local_windows())
        for (std::int64_t i = 0; i < w.len; ++i)
          std::copy_n(&g[(b * s.seq_len + w.begin + i) * row], row,
                      &out[(b * s.seq_len + w.row + i) * row]);
    return out;
  };
  std::vector<double> qd, kd, vd, dod;
  auto q = to_view<B>(reorder(qg), s, &qd), k = to_view<B>(reorder(kg), s, &kd),
       v = to_view<B>(reorder(vg), s, &vd), dout = to_view<B>(reorder(dog), s, &dod);
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dq("dq", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dk("dk", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  poison(lse);
  plan.forward(q, k, v, out, lse);
  plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
  auto rounded = [](std::vector<double> x) {
    for (double& e : x) e = static_cast<double>(static_cast<T>(e));
    return x;
  };
  const auto qr = rounded(qg), kr = rounded(kg), vr = rounded(vg), dor = rounded(dog);
  std::vector<double> rout(numel(s)), rlse(s.batch * s.heads * s.seq_len), rdq(numel(s)),
      rdk(numel(s)), rdv(numel(s));
  dilated::reference::forward(cfg, s, qr.data(), kr.data(), vr.data(), rout.data(), rlse.data());
  dilated::reference::backward(cfg, s, qr.data(), kr.data(), vr.data(), dor.data(), rdq.data(),
                               rdk.data(), rdv.data());
  EXPECT_LE(scaled_error(from_view(out), reorder(rout)), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(from_view(dq), reorder(rdq)), Tol<T>::grad) << "dq";
  EXPECT_LE(scaled_error(from_view(dk), reorder(rdk)), Tol<T>::grad) << "dk";
  EXPECT_LE(scaled_error(from_view(dv), reorder(rdv)), Tol<T>::grad) << "dv";
}

TEST(NcclOneRank, PlanMatchesFloat64Reference) {
  SKIP_WITHOUT_GPU();
  const std::int64_t N = 256;
  std::uint64_t seed = 41000;
  for (bool causal : {false, true}) {
    const std::vector<AttentionConfig> cfgs = {
        AttentionConfig::dense(N, causal), make_config({{32, 1}, {64, 2}, {N, 4}}, causal)};
    for (const auto& c : cfgs) {
      check_plan<float>(c, {2, N, 4, 64}, dilated::dist::Layout::Contiguous, seed += 10);
      check_plan<double>(c, {1, N, 3, 32}, dilated::dist::Layout::Contiguous, seed += 10);
    }
    check_plan<float>(AttentionConfig::dense(N, causal), {1, N, 2, 64},
                      dilated::dist::Layout::Zigzag, seed += 10);
  }
}

// NCCL reaches device memory only: a host execution space is refused at
// plan construction, before anything moves.
TEST(NcclOneRank, HostMemoryIsRefused) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on the GPU machine";
  OneRankNccl nc;
  ASSERT_NE(nc.comm, nullptr);
  dilated::dist::NcclCommunicator comm(nc.comm);
  try {
    dilated::dist::SeqParallelPlan<Kokkos::DefaultHostExecutionSpace> plan(
        AttentionConfig::dense(64), {1, 64, 2, 16}, comm);
    ADD_FAILURE() << "no error";
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), "dist.transport_memory");
  }
}

}  // namespace
}  // namespace dtest
