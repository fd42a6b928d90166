// Sequence parallelism over NCCL, one process per GPU (issue 7): time per
// forward and backward, tokens/s, FLOP rate per GPU, bytes moved and the share
// of the ring's transfer time hidden under compute. Started by
// perf_tests/launch_ranks.sh (which runs it under mpirun or as plain
// processes); perf_tests/run_multi_gpu.sh runs the weak and strong scaling
// series and prints the tables.
//
//   launch_ranks.sh P bench_seq_parallel_nccl [--seq N | --seq-per-rank l]
//       [--branches w:r,...] [--heads 16] [--dim 128] [--batch 1] [--causal]
//       [--zigzag] [--iters 3] [--no-backward] [--label text] [--dtype float|bf16]
//       [--phases]
//
// --phases adds one backward with a fence at every phase boundary and prints
// its time per phase (SeqParallelPlan::set_phase_timer; max over ranks).
// DILATED_DIST_ZERO_WHOLE=1 zeroes whole dK/dV blocks per ring step (the
// earlier code; A/B), DILATED_FA3_WINDOW_ACC=whole the same for cuda_fa3's
// windowed accumulators.
//
// --dtype bf16 gives the ranks bf16 Views, which SeqParallelPlan computes
// with the windowed cuda_fa3 calls (dispatch/window_plan.hpp; H100 rates);
// float runs the portable kernels. The JSON's "backend" says which ran.
//
// In --branches, w = "N" means the whole (global) sequence and r = "N/k"
// means N / k, so a weak-scaling series can keep a global branch whose
// sparsified rows per segment stay fixed as N grows. Dense: --branches N:1.
// FLOPs are dilated::forward_flops / backward_flops (4 d per attended pair,
// backward 2.5x). Prints one JSON object per run on rank 0.
#include <cuda_runtime.h>

#include <Kokkos_Core.hpp>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dilated_attention.hpp>

#include "dist/nccl_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"
#include "nccl_world.hpp"
#include "timed_communicator.hpp"

namespace {

using dilated_bench::hidden_fraction;
using dilated_bench::now_s;

struct Args {
  std::int64_t seq = 0, seq_per_rank = 0, heads = 16, dim = 128, batch = 1;
  std::string branches = "N:1", label, dtype = "float";
  bool causal = false, zigzag = false, backward = true;
  bool phases = false;  // one extra backward with a fence at every phase boundary
  int iters = 3;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + k);
      return std::string(argv[++i]);
    };
    if (k == "--seq") a.seq = std::stoll(next());
    else if (k == "--seq-per-rank") a.seq_per_rank = std::stoll(next());
    else if (k == "--heads") a.heads = std::stoll(next());
    else if (k == "--dim") a.dim = std::stoll(next());
    else if (k == "--batch") a.batch = std::stoll(next());
    else if (k == "--branches") a.branches = next();
    else if (k == "--iters") a.iters = std::stoi(next());
    else if (k == "--label") a.label = next();
    else if (k == "--dtype") a.dtype = next();
    else if (k == "--causal") a.causal = true;
    else if (k == "--zigzag") a.zigzag = true;
    else if (k == "--no-backward") a.backward = false;
    else if (k == "--phases") a.phases = true;
    else if (k.rfind("--kokkos", 0) != 0) throw std::runtime_error("unknown option " + k);
  }
  return a;
}

// "N" -> N, "N/k" -> N / k, else the number.
std::int64_t size_expr(const std::string& s, std::int64_t N) {
  if (s == "N") return N;
  if (s.rfind("N/", 0) == 0) return N / std::stoll(s.substr(2));
  return std::stoll(s);
}

dilated::AttentionConfig make_config(const Args& a, std::int64_t N) {
  dilated::AttentionConfig cfg;
  std::stringstream bs(a.branches);
  for (std::string item; std::getline(bs, item, ',');) {
    const auto colon = item.find(':');
    cfg.branches.push_back(
        {size_expr(item.substr(0, colon), N), size_expr(item.substr(colon + 1), N)});
  }
  cfg.causal = a.causal;
  return cfg;
}

// One series point with tensors of type T (float: portable kernels; bf16: cuda_fa3).
template <class T>
void run(const Args& a, dtest::NcclWorld& world) {
  using Exec = Kokkos::DefaultExecutionSpace;
  dilated::dist::NcclCommunicator nccl(world.comm());
  dilated_bench::TimedCommunicator comm(nccl);
  const int P = comm.size();
  const std::int64_t N = a.seq > 0 ? a.seq : a.seq_per_rank * P;
  const dilated::AttentionConfig cfg = make_config(a, N);
  const dilated::ProblemShape g{a.batch, N, a.heads, a.dim};
  dilated::dist::SeqParallelPlan<Exec> plan(
      cfg, g, comm, a.zigzag ? dilated::dist::Layout::Zigzag : dilated::dist::Layout::Contiguous);
  // A/B of the per-step zeroing: DILATED_DIST_ZERO_WHOLE=1 zeroes whole-shard
  // dK/dV blocks at every ring step (the earlier code) instead of the kept rows.
  const char* zero_whole = std::getenv("DILATED_DIST_ZERO_WHOLE");
  plan.set_zero_whole_blocks(zero_whole && std::string(zero_whole) == "1");
  const auto s = plan.local_shape();
  // "portable/Cuda" or "cuda_fa3" (the text before the reason).
  std::string backend = plan.template compute_backend<T>();
  backend = backend.substr(0, backend.find(':'));
  using V4 = Kokkos::View<T****, Kokkos::LayoutRight, Exec::memory_space>;
  using VL = Kokkos::View<dilated::details::accum_t<T>***, Kokkos::LayoutRight, Exec::memory_space>;
  auto make4 = [&](const char* n) {
    return V4(std::string(n), static_cast<std::size_t>(s.batch),
              static_cast<std::size_t>(s.seq_len), static_cast<std::size_t>(s.heads),
              static_cast<std::size_t>(s.head_dim));
  };
  V4 q = make4("q"), k = make4("k"), v = make4("v"), out = make4("out"), dout = make4("dout");
  V4 dq, dk, dv;
  if (a.backward) dq = make4("dq"), dk = make4("dk"), dv = make4("dv");
  VL lse("lse", s.batch, s.heads, s.seq_len);
  {  // fresh random inputs, different on every rank
    auto h = Kokkos::create_mirror_view(q);
    std::mt19937 gen(1234 + 7 * comm.rank());
    std::uniform_real_distribution<float> u(-1, 1);
    for (V4 t : {q, k, v, dout}) {
      for (std::size_t i = 0; i < h.span(); ++i) h.data()[i] = static_cast<T>(u(gen));
      Kokkos::deep_copy(t, h);
    }
  }
  auto barrier = [&] {
    Kokkos::fence();
    const std::int64_t x = 0;
    std::int64_t lo, hi;
    comm.allreduce_min_max(&x, &lo, &hi, 1);
  };
  auto max_i64 = [&](std::int64_t x) {
    std::int64_t lo, hi;
    comm.allreduce_min_max(&x, &lo, &hi, 1);
    return hi;
  };
  // Seconds travel as microseconds (the only collective is int64 min/max).
  auto max_over_ranks = [&](double x) {
    return max_i64(static_cast<std::int64_t>(x * 1e6)) * 1e-6;
  };
  auto sum_over_ranks = [&](double x) {  // one rank's value at a time
    double total = 0;
    for (int r = 0; r < P; ++r)
      total += max_i64(comm.rank() == r ? static_cast<std::int64_t>(x * 1e6) : 0) * 1e-6;
    return total;
  };
  // Replay buffers: device memory, sized once from the first call's steps.
  T* replay_a = nullptr;
  T* replay_b = nullptr;
  std::size_t replay_bytes = 0;
  auto replay = [&]() {
    const std::size_t need = comm.largest_transfer();
    if (need > replay_bytes) {
      cudaFree(replay_a);
      cudaFree(replay_b);
      cudaMalloc(&replay_a, need);
      cudaMalloc(&replay_b, need);
      replay_bytes = need;
    }
    return comm.replay(replay_a, replay_b, barrier);
  };

  double fwd = 1e30, fwd_wait = 0, fwd_alone = 0, bwd = 1e30, bwd_wait = 0, bwd_alone = 0;
  std::size_t fwd_bytes = 0, bwd_bytes = 0;
  for (int it = 0; it <= a.iters; ++it) {  // iteration 0 warms up
    comm.reset();
    barrier();
    double t0 = now_s();
    plan.forward(q, k, v, out, lse);  // fences before returning
    const double tf = max_over_ranks(now_s() - t0);
    const double wf = comm.wait_s;
    const std::size_t bf = comm.bytes;
    const double af = replay();
    double tb = 0, wb = 0, ab = 0;
    std::size_t bb = 0;
    if (a.backward) {
      comm.reset();
      barrier();
      t0 = now_s();
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
      tb = max_over_ranks(now_s() - t0);
      wb = comm.wait_s;
      bb = comm.bytes;
      ab = replay();
    }
    if (it == 0) continue;
    if (tf < fwd) fwd = tf, fwd_wait = wf, fwd_alone = af, fwd_bytes = bf;
    if (a.backward && tb < bwd) bwd = tb, bwd_wait = wb, bwd_alone = ab, bwd_bytes = bb;
  }
  cudaFree(replay_a);
  cudaFree(replay_b);
  // --phases: one more backward, timed phase by phase (fences between phases,
  // so nothing overlaps: the sum exceeds the call). Max over ranks per phase.
  static const char* const kPhases[] = {"delta",        "zero_grads", "pack_kv",       "compute_own",
                                        "wait_kv",      "return_wait_add", "zero_block", "unpack_kv",
                                        "compute_ring", "wait_acc",   "acc_add_pack",  "compute_local"};
  std::string phases_json;
  if (a.phases && a.backward) {
    dilated::dist::PhaseTimer timer;
    plan.set_phase_timer(&timer);
    barrier();
    const double t0 = now_s();
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
    const double total = max_over_ranks(now_s() - t0);
    plan.set_phase_timer(nullptr);
    phases_json = ",\n \"backward_phased_s\": " + std::to_string(total) + ", \"backward_phases_ms_max_rank\": {";
    double known = 0;
    for (const char* name : kPhases) {
      const auto it = timer.seconds().find(name);
      const double x = max_over_ranks(it == timer.seconds().end() ? 0.0 : it->second);
      known += it == timer.seconds().end() ? 0.0 : it->second;
      phases_json += std::string(name == kPhases[0] ? "" : ", ") + "\"" + name + "\": " + std::to_string(1e3 * x);
    }
    // This rank's phases add up to its call; a gap means a phase without a mark.
    phases_json += "}, \"backward_phases_sum_rank0_ms\": " + std::to_string(1e3 * known);
  }
  const double fw = sum_over_ranks(fwd_wait) / P, fa = sum_over_ranks(fwd_alone) / P;
  const double bw = a.backward ? sum_over_ranks(bwd_wait) / P : 0;
  const double ba = a.backward ? sum_over_ranks(bwd_alone) / P : 0;
  const double fb = static_cast<double>(max_i64(static_cast<std::int64_t>(fwd_bytes)));
  const double bbytes = static_cast<double>(max_i64(static_cast<std::int64_t>(bwd_bytes)));
  const double ff = dilated::forward_flops(cfg, g), bflops = dilated::backward_flops(cfg, g);
  const double tokens = static_cast<double>(a.batch * N);
  if (comm.rank() == 0) {
    std::printf(
        "{\"label\": \"%s\", \"ranks\": %d, \"seq\": %lld, \"seq_per_rank\": %lld, \"batch\": "
        "%lld, \"heads\": %lld, \"dim\": %lld, \"branches\": \"%s\", \"causal\": %s, "
        "\"zigzag\": %s, \"dtype\": \"%s\", \"backend\": \"%s\",\n"
        " \"forward_s\": %.6f, \"forward_tokens_per_s\": %.1f, \"forward_tflops_per_gpu\": "
        "%.4f, \"forward_bytes_sent_max_rank\": %.0f, \"forward_exposed_comm_s\": %.6f, "
        "\"forward_comm_alone_s\": %.6f, \"forward_hidden_fraction\": %.3f",
        a.label.c_str(), P, static_cast<long long>(N), static_cast<long long>(N / P),
        static_cast<long long>(a.batch), static_cast<long long>(a.heads),
        static_cast<long long>(a.dim), a.branches.c_str(), a.causal ? "true" : "false",
        a.zigzag ? "true" : "false", a.dtype.c_str(), backend.c_str(), fwd, tokens / fwd,
        ff / fwd / P * 1e-12, fb, fw, fa, hidden_fraction(fw, fa));
    if (a.backward)
      std::printf(
          ",\n \"backward_s\": %.6f, \"backward_tokens_per_s\": %.1f, "
          "\"backward_tflops_per_gpu\": %.4f, \"backward_bytes_sent_max_rank\": %.0f, "
          "\"backward_exposed_comm_s\": %.6f, \"backward_comm_alone_s\": %.6f, "
          "\"backward_hidden_fraction\": %.3f, \"fwd_bwd_tflops_per_gpu\": %.4f",
          bwd, tokens / bwd, bflops / bwd / P * 1e-12, bbytes, bw, ba, hidden_fraction(bw, ba),
          (ff + bflops) / (fwd + bwd) / P * 1e-12);
    std::printf("%s}\n", phases_json.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  dtest::NcclWorld world;
  std::vector<std::string> args(argv, argv + argc);
  args.push_back("--kokkos-device-id=" + std::to_string(world.device()));
  std::vector<char*> kargv;
  for (auto& s : args) kargv.push_back(&s[0]);
  int kargc = static_cast<int>(kargv.size());
  Kokkos::initialize(kargc, kargv.data());
  int rc = 0;
  try {
    const Args a = parse(argc, argv);
    if (a.dtype == "float") {
      run<float>(a, world);
    } else if (a.dtype == "bf16") {
#if DILATED_AUTO_PLAN_HAS_FA3 && KOKKOS_VERSION >= 40000
      run<Kokkos::Experimental::bhalf_t>(a, world);
#else
      throw std::runtime_error("--dtype bf16 needs a build with cuda_fa3 and a CUDA Kokkos 4");
#endif
    } else {
      throw std::runtime_error("--dtype must be float or bf16, not " + a.dtype);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] %s\n", world.rank(), e.what());
    rc = 1;
  }
  Kokkos::finalize();
  return rc;
}
