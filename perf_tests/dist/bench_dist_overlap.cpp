// How much of the ring's transfer time the compute hides, on CPU ranks.
//
//   mpirun -np 2 bench_dist_overlap --seq 32768 --heads 8 --dim 64 \
//       --branches 2048:1,4096:2,8192:4,32768:8 [--causal] [--zigzag] [--iters 5]
//       [--progress-thread [--poll-us 20]]
//
// A timing decorator around the MPI communicator records every ring step of
// a forward (and a backward) call and the time spent blocked in wait() - the
// exposed communication. The same steps are then replayed with no compute in
// between, which is the transfer time alone. hidden fraction = 1 - exposed /
// alone, summed over ranks. Prints one JSON object (rank 0).
//
// The backward is measured twice per iteration: with the default schedule
// (each cross-rank branch's final dK/dV accumulator return overlaps the
// compute after it) and with the earlier one, kept as
// SeqParallelPlan::set_overlap_accumulator_return(false), where each branch
// waits for its return: the "backward_eager_return_*" fields.
#include <mpi.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dilated_attention.hpp>

#include "dist/mpi_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"
#include "timed_communicator.hpp"

namespace {

using dilated_bench::hidden_fraction;
using dilated_bench::now_s;


struct Args {
  std::int64_t seq = 32768, heads = 8, dim = 64, batch = 1;
  std::string branches = "2048:1,4096:2,8192:4,32768:8";
  bool causal = false, zigzag = false, progress_thread = false;
  int iters = 5, poll_us = 20;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc || (i < argc && argv[i][0] == '-'); ++i) {
    const std::string k = argv[i];
    auto next = [&] { return std::string(argv[++i]); };
    if (k == "--seq") a.seq = std::stoll(next());
    else if (k == "--heads") a.heads = std::stoll(next());
    else if (k == "--dim") a.dim = std::stoll(next());
    else if (k == "--batch") a.batch = std::stoll(next());
    else if (k == "--branches") a.branches = next();
    else if (k == "--iters") a.iters = std::stoi(next());
    else if (k == "--causal") a.causal = true;
    else if (k == "--zigzag") a.zigzag = true;
    else if (k == "--progress-thread") a.progress_thread = true;
    else if (k == "--poll-us") a.poll_us = std::stoi(next());
  }
  return a;
}

double sum_over_ranks(double x) {
  double s = 0;
  MPI_Allreduce(&x, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return s;
}
double max_over_ranks(double x) {
  double s = 0;
  MPI_Allreduce(&x, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  Kokkos::initialize(argc, argv);
  {
    using Exec = Kokkos::DefaultHostExecutionSpace;
    const Args a = parse(argc, argv);
    dilated::AttentionConfig cfg;
    std::stringstream bs(a.branches);
    for (std::string item; std::getline(bs, item, ',');) {
      const auto colon = item.find(':');
      cfg.branches.push_back({std::stoll(item.substr(0, colon)), std::stoll(item.substr(colon + 1))});
    }
    cfg.causal = a.causal;
    dilated::dist::MpiCommunicator::Options opt;
    opt.progress_thread = a.progress_thread;
    opt.poll_interval_us = a.poll_us;
    dilated::dist::MpiCommunicator mpi(MPI_COMM_WORLD, opt);
    dilated_bench::TimedCommunicator comm(mpi);
    // The recorded steps again, back to back, with no compute: transfer time alone.
    auto replay = [&comm] {
      std::vector<char> a(comm.largest_transfer(), 1), b(comm.largest_transfer(), 0);
      return comm.replay(a.data(), b.data(), [] { MPI_Barrier(MPI_COMM_WORLD); });
    };
    const dilated::ProblemShape g{a.batch, a.seq, a.heads, a.dim};
    dilated::dist::SeqParallelPlan<Exec> plan(
        cfg, g, comm, a.zigzag ? dilated::dist::Layout::Zigzag : dilated::dist::Layout::Contiguous);
    const auto s = plan.local_shape();
    using V4 = Kokkos::View<float****, Kokkos::LayoutRight, Exec::memory_space>;
    using VL = Kokkos::View<float***, Kokkos::LayoutRight, Exec::memory_space>;
    V4 q("q", s.batch, s.seq_len, s.heads, s.head_dim), k("k", s.batch, s.seq_len, s.heads, s.head_dim),
        v("v", s.batch, s.seq_len, s.heads, s.head_dim), out("o", s.batch, s.seq_len, s.heads, s.head_dim),
        dout("do", s.batch, s.seq_len, s.heads, s.head_dim), dq("dq", s.batch, s.seq_len, s.heads, s.head_dim),
        dk("dk", s.batch, s.seq_len, s.heads, s.head_dim), dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
    VL lse("lse", s.batch, s.heads, s.seq_len);
    std::mt19937 gen(1234 + comm.rank());
    std::uniform_real_distribution<float> u(-1, 1);
    for (V4 t : {q, k, v, dout})
      for (std::size_t i = 0; i < t.span(); ++i) t.data()[i] = u(gen);

    double fwd = 1e30, fwd_wait = 0, fwd_alone = 1e30, bwd = 1e30, bwd_wait = 0, bwd_alone = 1e30;
    double fwd_busy = 0, bwd_busy = 0;  // this rank's time outside wait(): compute + posting
    double eager = 1e30, eager_wait = 0, eager_alone = 1e30, eager_busy = 0;
    std::size_t fwd_bytes = 0, bwd_bytes = 0;
    for (int it = 0; it <= a.iters; ++it) {  // iteration 0 warms up
      comm.reset();
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now_s();
      plan.forward(q, k, v, out, lse);
      const double own_f = now_s() - t0;
      const double tf = max_over_ranks(own_f);
      const double wf = comm.wait_s;
      fwd_bytes = comm.bytes;
      const double af = replay();
      comm.reset();
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = now_s();
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
      const double own_b = now_s() - t0;
      const double tb = max_over_ranks(own_b);
      const double wb = comm.wait_s;
      bwd_bytes = comm.bytes;
      const double ab = replay();
      plan.set_overlap_accumulator_return(false);  // the earlier backward schedule
      comm.reset();
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = now_s();
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
      const double own_e = now_s() - t0;
      const double te = max_over_ranks(own_e);
      const double we = comm.wait_s;
      const double ae = replay();
      plan.set_overlap_accumulator_return(true);
      if (it == 0) continue;
      if (te < eager) eager = te, eager_wait = we, eager_alone = ae, eager_busy = own_e - we;
      if (tf < fwd) fwd = tf, fwd_wait = wf, fwd_alone = af, fwd_busy = own_f - wf;  // fastest
      if (tb < bwd) bwd = tb, bwd_wait = wb, bwd_alone = ab, bwd_busy = own_b - wb;
    }
    // Bytes: the busiest rank (causal contiguous rings send less from later ranks).
    fwd_bytes = static_cast<std::size_t>(max_over_ranks(static_cast<double>(fwd_bytes)));
    bwd_bytes = static_cast<std::size_t>(max_over_ranks(static_cast<double>(bwd_bytes)));
    // Ranks that compute at different speeds (shared cores, causal work) wait
    // for each other inside wait(): the spread of the busy times shows it.
    const double fbusy_max = max_over_ranks(fwd_busy), fbusy_min = -max_over_ranks(-fwd_busy);
    const double bbusy_max = max_over_ranks(bwd_busy), bbusy_min = -max_over_ranks(-bwd_busy);
    const double fw = sum_over_ranks(fwd_wait), fa = sum_over_ranks(fwd_alone);
    const double bw = sum_over_ranks(bwd_wait), ba = sum_over_ranks(bwd_alone);
    const double ew = sum_over_ranks(eager_wait), ea = sum_over_ranks(eager_alone);
    const double ebusy_max = max_over_ranks(eager_busy), ebusy_min = -max_over_ranks(-eager_busy);
    if (comm.rank() == 0)
      std::printf(
          "{\"ranks\": %d, \"seq\": %lld, \"heads\": %lld, \"dim\": %lld, \"branches\": \"%s\", "
          "\"causal\": %s, \"zigzag\": %s, \"omp_threads\": %d, \"progress_thread\": %s,\n"
          " \"forward_s\": %.6f, \"forward_exposed_comm_s_per_rank\": %.6f, "
          "\"forward_comm_alone_s_per_rank\": %.6f, \"forward_bytes_sent_max_rank\": %zu, "
          "\"forward_hidden_fraction\": %.3f, \"forward_busy_s_min_max_rank\": [%.6f, %.6f],\n"
          " \"backward_s\": %.6f, \"backward_exposed_comm_s_per_rank\": %.6f, "
          "\"backward_comm_alone_s_per_rank\": %.6f, \"backward_bytes_sent_max_rank\": %zu, "
          "\"backward_hidden_fraction\": %.3f, \"backward_busy_s_min_max_rank\": [%.6f, %.6f],\n"
          " \"backward_eager_return_s\": %.6f, \"backward_eager_return_exposed_comm_s_per_rank\": %.6f, "
          "\"backward_eager_return_comm_alone_s_per_rank\": %.6f, "
          "\"backward_eager_return_hidden_fraction\": %.3f, "
          "\"backward_eager_return_busy_s_min_max_rank\": [%.6f, %.6f]}\n",
          comm.size(), static_cast<long long>(a.seq), static_cast<long long>(a.heads),
          static_cast<long long>(a.dim), a.branches.c_str(), a.causal ? "true" : "false",
          a.zigzag ? "true" : "false", Exec().concurrency(), a.progress_thread ? "true" : "false", fwd, fw / comm.size(),
          fa / comm.size(), fwd_bytes, hidden_fraction(fw, fa), fbusy_min, fbusy_max, bwd, bw / comm.size(),
          ba / comm.size(), bwd_bytes, hidden_fraction(bw, ba), bbusy_min, bbusy_max, eager,
          ew / comm.size(), ea / comm.size(), hidden_fraction(ew, ea), ebusy_min, ebusy_max);
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
