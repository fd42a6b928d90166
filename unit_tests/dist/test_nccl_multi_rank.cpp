// Sequence parallelism over NCCL with one process per GPU (issue 7): started
// by perf_tests/launch_ranks.sh (mpirun or plain processes) on a machine with
// P GPUs. Every rank's shard of the forward and backward equals
//  - the float64 reference on the gathered sequence (the small cases of
//    dist_cases.hpp, the same matrix the MPI tests run on CPU ranks), and
//  - the single-GPU result: Plan<Cuda> on the whole gathered sequence, run on
//    this rank's GPU (cases with shards of thousands of rows, where a float64
//    reference per rank would take minutes).
// A size rule broken on one rank raises the same error on every rank.
// Compiled wherever NCCL is; without a CUDA Kokkos or a GPU every test skips.
#include <cuda_runtime.h>

#include "../test_harness.hpp"
#include "dispatch/auto_plan.hpp"
#include "dist/nccl_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"
#include "dist_cases.hpp"
#include "nccl_world.hpp"
#include "shard_slices.hpp"

namespace dtest {
// Set by test_main_nccl.cpp (null when this process has no GPU).
extern NcclWorld* g_world;

namespace {

using dilated::dist::Layout;

#if defined(KOKKOS_ENABLE_CUDA)
using Exec = Kokkos::Cuda;
#define SKIP_WITHOUT_GPU() \
  if (!g_world) GTEST_SKIP() << "no CUDA device: run on the GPU machine"
#else
using Exec = Kokkos::DefaultHostExecutionSpace;
#define SKIP_WITHOUT_GPU() GTEST_SKIP() << "Kokkos without CUDA: build against a CUDA Kokkos"
#endif

template <class T>
struct Outputs {
  using B = Backend<Exec, T>;
  typename B::View4 out, dq, dk, dv;
  typename B::ViewL lse;
  explicit Outputs(const ProblemShape& s)
      : out("out", s.batch, s.seq_len, s.heads, s.head_dim),
        dq("dq", s.batch, s.seq_len, s.heads, s.head_dim),
        dk("dk", s.batch, s.seq_len, s.heads, s.head_dim),
        dv("dv", s.batch, s.seq_len, s.heads, s.head_dim),
        lse("lse", s.batch, s.heads, s.seq_len) {
    for (const auto& t : {out, dq, dk, dv}) poison(t);
    poison(lse);
  }
};

// Runs the sharded forward + backward on this rank and compares the shard
// with `want_*` (gathered tensors), computed by `reference` (float64 on the
// host) or by the single-GPU plan.
template <class T>
void check_case(const DistCase& c, std::uint64_t seed, bool against_single_gpu) {
  using B = Backend<Exec, T>;
  const int rank = g_world->rank(), P = g_world->size();
  SCOPED_TRACE(std::string(c.what) + ": " + case_name(c.config, c.shape) +
               (c.layout == Layout::Zigzag ? " zigzag" : " contiguous") + ", rank " +
               std::to_string(rank) + " of " + std::to_string(P) +
               (against_single_gpu ? ", vs the single-GPU plan" : ", vs float64"));
  const ProblemShape& g = c.shape;
  const auto qg = random_vector(numel(g), seed), kg = random_vector(numel(g), seed + 1),
             vg = random_vector(numel(g), seed + 2), dog = random_vector(numel(g), seed + 3);

  dilated::dist::NcclCommunicator comm(g_world->comm());
  dilated::dist::SeqParallelPlan<Exec> plan(c.config, g, comm, c.layout);
  const ProblemShape s = plan.local_shape();
  const auto wins = plan.local_windows();
  const std::int64_t l = s.seq_len;
  auto q = to_view<B>(shard_of(qg, g, wins, l), s);
  auto k = to_view<B>(shard_of(kg, g, wins, l), s);
  auto v = to_view<B>(shard_of(vg, g, wins, l), s);
  auto dout = to_view<B>(shard_of(dog, g, wins, l), s);
  Outputs<T> o(s);
  plan.forward(q, k, v, o.out, o.lse);
  plan.backward(q, k, v, o.out, o.lse, dout, o.dq, o.dk, o.dv);

  std::vector<double> rout(numel(g)), rlse(g.batch * g.heads * g.seq_len), rdq(numel(g)),
      rdk(numel(g)), rdv(numel(g));
  if (against_single_gpu) {
    dilated::Plan<Exec> single(c.config, g);
    auto qa = to_view<B>(qg, g), ka = to_view<B>(kg, g), va = to_view<B>(vg, g),
         doa = to_view<B>(dog, g);
    Outputs<T> r(g);
    single.forward(qa, ka, va, r.out, r.lse);
    single.backward(qa, ka, va, r.out, r.lse, doa, r.dq, r.dk, r.dv);
    rout = from_view(r.out), rlse = lse_from_view(r.lse), rdq = from_view(r.dq);
    rdk = from_view(r.dk), rdv = from_view(r.dv);
  } else {
    auto rounded = [](std::vector<double> x) {
      for (double& e : x) e = static_cast<double>(static_cast<T>(e));
      return x;
    };
    const auto qr = rounded(qg), kr = rounded(kg), vr = rounded(vg), dor = rounded(dog);
    dilated::reference::forward(c.config, g, qr.data(), kr.data(), vr.data(), rout.data(),
                                rlse.data());
    dilated::reference::backward(c.config, g, qr.data(), kr.data(), vr.data(), dor.data(),
                                 rdq.data(), rdk.data(), rdv.data());
  }
  EXPECT_LE(scaled_error(from_view(o.out), shard_of(rout, g, wins, l)), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(o.lse), lse_shard_of(rlse, g, wins, l)), Tol<T>::lse)
      << "lse";
  EXPECT_LE(scaled_error(from_view(o.dq), shard_of(rdq, g, wins, l)), Tol<T>::grad) << "dq";
  EXPECT_LE(scaled_error(from_view(o.dk), shard_of(rdk, g, wins, l)), Tol<T>::grad) << "dk";
  EXPECT_LE(scaled_error(from_view(o.dv), shard_of(rdv, g, wins, l)), Tol<T>::grad) << "dv";
}

// Shards of 1024 rows: LongNet branches local, spanning 2 ranks and spanning
// all; dense and causal; both layouts.
std::vector<DistCase> large_cases(int P) {
  const std::int64_t l = 1024, N = l * P;
  std::vector<DistCase> cs;
  for (bool causal : {false, true}) {
    cs.push_back({make_config({{N, 1}}, causal), {1, N, 4, 64}, Layout::Contiguous, "dense"});
    cs.push_back({make_config({{256, 1}, {1024, 2}, {N, 4}}, causal), {2, N, 4, 64},
                  Layout::Contiguous, "LongNet, local + all-rank branches"});
    if (P % 2 == 0)
      cs.push_back({make_config({{512, 1}, {2048, 2}, {N, 8}}, causal), {1, N, 8, 128},
                    Layout::Contiguous, "a branch spanning 2 ranks, d = 128"});
    cs.push_back({make_config({{N, 1}}, causal), {1, N, 4, 64}, Layout::Zigzag, "zigzag dense"});
    cs.push_back({make_config({{128, 1}, {512, 2}, {N, 4}}, causal), {1, N, 4, 64},
                  Layout::Zigzag, "zigzag LongNet"});
  }
  return cs;
}

TEST(NcclMultiRank, RingStepAndReduction) {
  SKIP_WITHOUT_GPU();
  dilated::dist::NcclCommunicator comm(g_world->comm());
  const int P = comm.size(), r = comm.rank();
  const std::int64_t in[2] = {r, 100 - 3 * r};
  std::int64_t lo[2] = {}, hi[2] = {};
  comm.allreduce_min_max(in, lo, hi, 2);
  EXPECT_EQ(lo[0], 0);
  EXPECT_EQ(hi[0], P - 1);
  EXPECT_EQ(lo[1], 100 - 3 * (P - 1));
  EXPECT_EQ(hi[1], 100);
  // One ring step: every rank sends a rank-tagged pattern to the next.
  const std::size_t n = 1 << 22;
  auto pattern = [](int who, std::size_t i) { return static_cast<float>(who * 1000003 + i % 4099); };
  std::vector<float> h(n), back(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = pattern(r, i);
  float *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&send), n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&recv), n * sizeof(float)), cudaSuccess);
  cudaMemcpy(send, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(recv, 0xff, n * sizeof(float));  // NaN poison
  comm.start_exchange(send, n * sizeof(float), (r + 1) % P, recv, n * sizeof(float),
                      (r + P - 1) % P);
  comm.wait();
  cudaMemcpy(back.data(), recv, n * sizeof(float), cudaMemcpyDeviceToHost);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) wrong += back[i] != pattern((r + P - 1) % P, i);
  EXPECT_EQ(wrong, 0u);
  cudaFree(send);
  cudaFree(recv);
}

TEST(NcclMultiRank, ShardsMatchFloat64Reference) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 71000;
  for (const DistCase& c : dist_cases(g_world->size())) {
    check_case<float>(c, seed += 10, false);
    check_case<double>(c, seed += 10, false);
  }
}

TEST(NcclMultiRank, LargeShardsMatchSingleGpu) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 81000;
  for (const DistCase& c : large_cases(g_world->size())) check_case<float>(c, seed += 10, true);
}

#if DILATED_AUTO_PLAN_HAS_FA3 && KOKKOS_VERSION >= 40000 && defined(KOKKOS_ENABLE_CUDA)
// bf16 shards compute with cuda_fa3 on every rank (dispatch/window_plan.hpp:
// the windowed cuda_fa3 calls) and match the single-GPU cuda_fa3 plan
// (AutoPlan<Cuda, bf16>) on the gathered sequence. Tolerances (scaled_error:
// max |diff| / max |want|) are the sum of both sides' bf16 error bounds
// against float64 (test_fa3_window / test_fa3_forward / test_fa3_backward):
// out 3e-2 + 2e-2, grad 5e-2 + 4e-2; lse 2 x 2e-3 relative, taken as 5e-3
// scaled. A missing ring step or window pair moves results by far more.
// from_view for 16-bit Views (Kokkos' half types convert to double through float).
template <class View4>
std::vector<double> from_view16(const View4& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  out.reserve(h.size());
  for (std::size_t b = 0; b < h.extent(0); ++b)
    for (std::size_t p = 0; p < h.extent(1); ++p)
      for (std::size_t hh = 0; hh < h.extent(2); ++hh)
        for (std::size_t x = 0; x < h.extent(3); ++x)
          out.push_back(static_cast<double>(static_cast<float>(h(b, p, hh, x))));
  return out;
}

void check_case_fa3(const DistCase& c, std::uint64_t seed) {
  using T = Kokkos::Experimental::bhalf_t;
  using B = Backend<Exec, T>;
  const int rank = g_world->rank(), P = g_world->size();
  SCOPED_TRACE(std::string(c.what) + ": " + case_name(c.config, c.shape) +
               (c.layout == Layout::Zigzag ? " zigzag" : " contiguous") + ", bf16, rank " +
               std::to_string(rank) + " of " + std::to_string(P));
  const ProblemShape& g = c.shape;
  const auto qg = random_vector(numel(g), seed), kg = random_vector(numel(g), seed + 1),
             vg = random_vector(numel(g), seed + 2), dog = random_vector(numel(g), seed + 3);
  dilated::dist::NcclCommunicator comm(g_world->comm());
  dilated::dist::SeqParallelPlan<Exec> plan(c.config, g, comm, c.layout);
  EXPECT_EQ(plan.compute_backend<T>().rfind("cuda_fa3", 0), 0u) << plan.compute_backend<T>();
  const ProblemShape s = plan.local_shape();
  const auto wins = plan.local_windows();
  const std::int64_t l = s.seq_len;
  auto q = to_view<B>(shard_of(qg, g, wins, l), s);
  auto k = to_view<B>(shard_of(kg, g, wins, l), s);
  auto v = to_view<B>(shard_of(vg, g, wins, l), s);
  auto dout = to_view<B>(shard_of(dog, g, wins, l), s);
  Outputs<T> o(s);
  plan.forward(q, k, v, o.out, o.lse);
  plan.backward(q, k, v, o.out, o.lse, dout, o.dq, o.dk, o.dv);

  dilated::AutoPlan<Exec, T> single(c.config, g);
  ASSERT_EQ(single.backend(), dilated::Backend::cuda_fa3);
  auto qa = to_view<B>(qg, g), ka = to_view<B>(kg, g), va = to_view<B>(vg, g), doa = to_view<B>(dog, g);
  Outputs<T> r(g);
  single.forward(qa, ka, va, r.out, r.lse);
  single.backward(qa, ka, va, r.out, r.lse, doa, r.dq, r.dk, r.dv);
  Kokkos::fence();
  const double tol_out = 5e-2, tol_lse = 5e-3, tol_grad = 9e-2;
  EXPECT_LE(scaled_error(from_view16(o.out), shard_of(from_view16(r.out), g, wins, l)), tol_out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(o.lse), lse_shard_of(lse_from_view(r.lse), g, wins, l)), tol_lse)
      << "lse";
  EXPECT_LE(scaled_error(from_view16(o.dq), shard_of(from_view16(r.dq), g, wins, l)), tol_grad) << "dq";
  EXPECT_LE(scaled_error(from_view16(o.dk), shard_of(from_view16(r.dk), g, wins, l)), tol_grad) << "dk";
  EXPECT_LE(scaled_error(from_view16(o.dv), shard_of(from_view16(r.dv), g, wins, l)), tol_grad) << "dv";
}

TEST(NcclMultiRank, Bf16ShardsRunCudaFa3AndMatchSingleGpu) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, g_world->device()) != cudaSuccess || prop.major != 9)
    GTEST_SKIP() << "cuda_fa3 needs a compute capability 9.x GPU";
  std::uint64_t seed = 91000;
  for (const DistCase& c : large_cases(g_world->size())) check_case_fa3(c, seed += 10);
}

// Two small cases (shards of 256 rows) of the above: quick enough for
// compute-sanitizer over several ranks (perf_tests/run_multi_gpu.sh bf16).
TEST(NcclMultiRank, Bf16SmallShardsRunCudaFa3) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, g_world->device()) != cudaSuccess || prop.major != 9)
    GTEST_SKIP() << "cuda_fa3 needs a compute capability 9.x GPU";
  const std::int64_t N = 256 * g_world->size();
  check_case_fa3({make_config({{64, 1}, {256, 2}, {N, 4}}, false), {1, N, 2, 64}, Layout::Contiguous,
                  "small LongNet, local + all-rank branches"},
                 92000);
  check_case_fa3({make_config({{N, 1}}, true), {1, N, 2, 128}, Layout::Zigzag, "small zigzag causal"}, 92010);
}

// cuda_fa3's own window rules are part of the collective check: a problem it
// runs whole but not in windows (a sequence of 2^31 rows: the windowed
// kernels' arithmetic is 32-bit) is refused on every rank, with dist's rule,
// before anything is written or sent. The Views are deliberately too short
// for the shard: the refusal must come before the shape checks (earlier the
// call passed the backend check and cuda_fa3 threw at the first window).
TEST(NcclMultiRank, Bf16WindowRefusalIsCollective) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, g_world->device()) != cudaSuccess || prop.major != 9)
    GTEST_SKIP() << "cuda_fa3 needs a compute capability 9.x GPU";
  using T = Kokkos::Experimental::bhalf_t;
  using B = Backend<Exec, T>;
  dilated::dist::NcclCommunicator comm(g_world->comm());
  const std::int64_t N = std::int64_t(1) << 31;
  dilated::dist::SeqParallelPlan<Exec> plan(AttentionConfig::dense(N), {1, N, 1, 64}, comm);
  EXPECT_EQ(plan.compute_backend<T>().rfind("cuda_fa3", 0), 0u) << plan.compute_backend<T>();
  typename B::View4 q("q", 1, 64, 1, 64), out("out", 1, 64, 1, 64), dq("dq", 1, 64, 1, 64),
      dk("dk", 1, 64, 1, 64), dv("dv", 1, 64, 1, 64);
  typename B::ViewL lse("lse", 1, 1, 64);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  for (int op = 0; op < 2; ++op) {
    std::string rule, what;
    try {
      if (op == 0)
        plan.forward(q, q, q, out, lse);
      else
        plan.backward(q, q, q, q, lse, q, dq, dk, dv);
    } catch (const dilated::Error& e) {
      rule = e.rule();
      what = e.what();
    }
    EXPECT_EQ(rule, "dist.no_16bit_window_backend") << (op ? "backward: " : "forward: ") << what;
    EXPECT_NE(what.find("2^31"), std::string::npos) << what;
  }
  for (const auto& t : {out, dq, dk, dv}) {
    const auto o = from_view(t);
    EXPECT_TRUE(std::all_of(o.begin(), o.end(), [](double x) { return std::isnan(x); }))
        << "an output was written before the error";
  }
}
#endif

// The cases above must include cross-rank branches (else the ring is idle).
TEST(NcclMultiRank, CasesIncludeCrossRankBranches) {
  SKIP_WITHOUT_GPU();
  const int P = g_world->size();
  if (P == 1) GTEST_SKIP() << "one rank: every branch is local";
  int cross = 0;
  for (const auto& cases : {dist_cases(P), large_cases(P)})
    for (const DistCase& c : cases) {
      dilated::dist::ShardLayout lay(c.config, c.shape, P, c.layout);
      for (int i = 0; i < lay.num_branches(); ++i) cross += lay.branch(i).cross_rank;
    }
  EXPECT_GT(cross, 4);
}

// A global shape that one rank gets wrong: every rank raises the same error
// (collective validation over NCCL) and the outputs stay untouched.
TEST(NcclMultiRank, DisagreementRaisesTheSameErrorOnEveryRank) {
  SKIP_WITHOUT_GPU();
  dilated::dist::NcclCommunicator comm(g_world->comm());
  const int P = comm.size();
  if (P == 1) GTEST_SKIP() << "needs two ranks";
  const std::int64_t N = 64 * P;
  const ProblemShape g{1, comm.rank() == P - 1 ? 2 * N : N, 2, 16};
  std::string rule;
  try {
    dilated::dist::SeqParallelPlan<Exec> plan(AttentionConfig::dense(N), g, comm);
  } catch (const dilated::Error& e) {
    rule = e.rule();
  }
  EXPECT_EQ(rule, "dist.ranks_disagree");
  // And a rule only the last rank breaks in its call (a wrong shard length):
  // the others must not hang in the ring and see the same error.
  const ProblemShape ok{1, N, 2, 16};
  dilated::dist::SeqParallelPlan<Exec> plan(AttentionConfig::dense(N), ok, comm);
  using B = Backend<Exec, float>;
  const std::int64_t rows = comm.rank() == P - 1 ? 32 : 64;
  typename B::View4 q("q", 1, rows, 2, 16), out("out", 1, rows, 2, 16);
  typename B::ViewL lse("lse", 1, 2, rows);
  poison(out);
  std::string call_rule;
  try {
    plan.forward(q, q, q, out, lse);
  } catch (const dilated::Error& e) {
    call_rule = e.rule();
  }
  EXPECT_FALSE(call_rule.empty());
  const auto o = from_view(out);
  EXPECT_TRUE(std::all_of(o.begin(), o.end(), [](double x) { return std::isnan(x); }))
      << "an output was written before the error";
  // Every rank reports the rank that failed, so the texts agree.
  std::int64_t h = 1469598103934665603ll & 0x7fffffffffffll;  // FNV-1a, kept positive
  for (unsigned char ch : call_rule) h = ((h ^ ch) * 1099511628211ll) & 0x7fffffffffffll;
  std::int64_t lo = 0, hi = 0;
  comm.allreduce_min_max(&h, &lo, &hi, 1);
  EXPECT_EQ(lo, hi) << "ranks raised different errors";
}

}  // namespace
}  // namespace dtest
