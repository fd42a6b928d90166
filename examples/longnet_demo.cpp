// longnet_demo: LongNet dilated attention over a long random sequence.
//
// Runs the forward (and, with --backward, the backward) pass of the paper's
// branch schedule (w = 2048..32768, r = 1, 2, 4, 6, 12) on the default Kokkos
// execution space, prints a progress line, tokens/s and achieved GFLOP/s, and
// the max error against the float64 reference on a sampled slice of rows,
// and a memory report of the workspace pool (peak, sizes, NUMA placement).
//
//   longnet_demo [--seq N] [--batch B] [--heads H] [--head-dim D] [--iters I]
//                [--causal] [--dense] [--backward] [--samples S]
#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <dilated_attention.hpp>
#include <memory/kokkos_workspace.hpp>
#include <memory/memory_report.hpp>

namespace {

struct Options {
  std::int64_t seq = 262144, batch = 1, heads = 4, head_dim = 64;
  int iters = 1, samples = 64;
  bool causal = false, dense = false, backward = false;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--seq N] [--batch B] [--heads H] [--head-dim D] [--iters I]\n"
               "          [--causal] [--dense] [--backward] [--samples S]\n",
               argv0);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> long long {
      if (i + 1 >= argc) usage(argv[0]);
      return std::atoll(argv[++i]);
    };
    if (a == "--seq") o.seq = next();
    else if (a == "--batch") o.batch = next();
    else if (a == "--heads") o.heads = next();
    else if (a == "--head-dim") o.head_dim = next();
    else if (a == "--iters") o.iters = static_cast<int>(next());
    else if (a == "--samples") o.samples = static_cast<int>(next());
    else if (a == "--causal") o.causal = true;
    else if (a == "--dense") o.dense = true;
    else if (a == "--backward") o.backward = true;
    else if (a.rfind("--kokkos", 0) == 0) continue;  // Kokkos' own flags
    else usage(argv[0]);
  }
  if (o.iters < 1) o.iters = 1;
  return o;
}

// Resident-set figures of this process in bytes (Linux; 0 elsewhere).
double proc_status_bytes(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  const std::size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0) kb = std::atof(line + n);
  std::fclose(f);
  return kb * 1024.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  const Options o = parse(argc, argv);
  using Exec = Kokkos::DefaultExecutionSpace;
  using View4 = Kokkos::View<float****, Kokkos::LayoutRight, Exec::memory_space>;
  using ViewL = Kokkos::View<float***, Kokkos::LayoutRight, Exec::memory_space>;

  dilated::AttentionConfig config = o.dense ? dilated::AttentionConfig::dense(o.seq)
                                            : dilated::AttentionConfig::longnet_default(o.seq);
  config.causal = o.causal;
  const dilated::ProblemShape shape{o.batch, o.seq, o.heads, o.head_dim};
  try {
    const dilated::Plan<Exec> plan(config, shape);
    std::printf("dilated-attention %s | %s | backend %s\n", DILATED_VERSION_STRING,
                dilated::describe(config).c_str(), plan.backend().c_str());
    std::printf("shape: batch %lld, seq %lld, heads %lld, head_dim %lld (float32), %d thread(s)\n",
                (long long)o.batch, (long long)o.seq, (long long)o.heads, (long long)o.head_dim,
                Exec::concurrency());

    View4 q("q", o.batch, o.seq, o.heads, o.head_dim), k("k", o.batch, o.seq, o.heads, o.head_dim),
        v("v", o.batch, o.seq, o.heads, o.head_dim), out("out", o.batch, o.seq, o.heads, o.head_dim);
    ViewL lse("lse", o.batch, o.heads, o.seq);
    Kokkos::Random_XorShift64_Pool<Exec> rng(20231107);
    // Through a flat view: fill_random on a rank-4 View parallelises over
    // extent(0) only, i.e. one thread when batch = 1.
    auto fill = [&](const View4& t) {
      Kokkos::fill_random(Kokkos::View<float*, typename View4::memory_space,
                                       Kokkos::MemoryTraits<Kokkos::Unmanaged>>(t.data(), t.span()),
                          rng, -1.0f, 1.0f);
    };
    fill(q);
    fill(k);
    fill(v);
    Kokkos::deep_copy(out, std::nanf(""));  // poison: every row must be written

    Kokkos::fence();
    // Host memory: everything resident now (inputs, outputs, LSE) is the
    // baseline; the peak beyond it is the kernels' extra memory.
    const double rss_base = proc_status_bytes("VmRSS:");
    const double qkv_bytes = 3.0 * o.batch * o.seq * o.heads * o.head_dim * sizeof(float);
    const double fwd_flops = dilated::forward_flops(config, shape);
    const double tokens = static_cast<double>(o.batch * o.seq);
    double best = 1e300;
    for (int it = 0; it < o.iters; ++it) {
      std::printf("\r[forward %d/%d] running...            ", it + 1, o.iters);
      std::fflush(stdout);
      const auto t0 = std::chrono::steady_clock::now();
      plan.forward(q, k, v, out, lse);
      Kokkos::fence();
      const double t = seconds_since(t0);
      best = std::min(best, t);
      std::printf("\r[forward %d/%d] %.3f s, %.1f GFLOP/s   ", it + 1, o.iters, t,
                  fwd_flops / t * 1e-9);
      std::fflush(stdout);
    }
    std::printf("\nforward : %.3f s  %.3g tokens/s  %.2f GFLOP/s (best of %d; %.4g GFLOP)\n", best,
                tokens / best, fwd_flops / best * 1e-9, o.iters, fwd_flops * 1e-9);
    const bool host_memory = Kokkos::SpaceAccessibility<Kokkos::HostSpace, Exec::memory_space>::accessible;
    if (host_memory && rss_base > 0)
      std::printf("memory  : forward peak extra %.1f MiB = %.3f%% of Q+K+V (%.1f MiB)\n",
                  (proc_status_bytes("VmHWM:") - rss_base) / 1048576.0,
                  100.0 * (proc_status_bytes("VmHWM:") - rss_base) / qkv_bytes, qkv_bytes / 1048576.0);

    if (o.backward) {
      View4 dout("dout", o.batch, o.seq, o.heads, o.head_dim), dq("dq", o.batch, o.seq, o.heads, o.head_dim),
          dk("dk", o.batch, o.seq, o.heads, o.head_dim), dv("dv", o.batch, o.seq, o.heads, o.head_dim);
      fill(dout);
      std::printf("[backward] running...");
      std::fflush(stdout);
      const auto t0 = std::chrono::steady_clock::now();
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
      Kokkos::fence();
      const double t = seconds_since(t0);
      const double bwd_flops = dilated::backward_flops(config, shape);
      const double grads = 4.0 * o.batch * o.seq * o.heads * o.head_dim * sizeof(float);  // dout, dq, dk, dv
      std::printf("\rbackward: %.3f s  %.3g tokens/s  %.2f GFLOP/s (%.4g GFLOP)\n", t, tokens / t,
                  bwd_flops / t * 1e-9, bwd_flops * 1e-9);
      if (host_memory && rss_base > 0)
        std::printf("memory  : backward peak extra %.1f MiB = %.3f%% of Q+K+V\n",
                    (proc_status_bytes("VmHWM:") - rss_base - grads) / 1048576.0,
                    100.0 * (proc_status_bytes("VmHWM:") - rss_base - grads) / qkv_bytes);
    }

    // Spot check against the float64 reference on sampled rows.
    auto qh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), q);
    auto kh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), k);
    auto vh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    auto oh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
    auto lh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
    std::mt19937_64 gen(7);
    std::vector<double> row(o.head_dim);
    double max_err = 0;
    for (int sidx = 0; sidx < o.samples; ++sidx) {
      const std::int64_t b = gen() % o.batch, p = gen() % o.seq, h = gen() % o.heads;
      double ref_lse;
      dilated::reference::forward_row(config, shape, qh.data(), kh.data(), vh.data(), b, p, h,
                                      row.data(), &ref_lse);
      for (std::int64_t x = 0; x < o.head_dim; ++x) {
        const double e = std::fabs(oh(b, p, h, x) - row[x]);
        max_err = std::isnan(e) ? INFINITY : std::max(max_err, e);
      }
      max_err = std::max(max_err, std::fabs(lh(b, h, p) - ref_lse) / std::max(1.0, std::fabs(ref_lse)));
    }
    // The workspace pool the plan's backward drew from (empty after a
    // forward-only run: the forward needs no workspace).
    const dilated::memory::WorkspaceStack& ws = dilated::memory::workspace_stack<Exec::memory_space>();
    std::printf("%s", dilated::memory::memory_report(*ws.pool, ws.tracking, ws.placement).c_str());

    const double tol = 1e-4;
    std::printf("check   : max error vs float64 reference on %d sampled rows = %.3g (%s, tol %.0e)\n",
                o.samples, max_err, max_err <= tol ? "ok" : "FAILED", tol);
    return max_err <= tol ? 0 : 1;
  } catch (const dilated::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
