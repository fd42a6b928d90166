// bench_memory: what the pools cost and what they save.
//
//  * allocate+free latency, steady state (one size repeated), of system
//    malloc, the pool, the pool under the tracking adaptor, and (CUDA builds)
//    cudaMallocAsync and the pool over it; plus a mixed batch of sizes;
//  * fragmentation (peak reserved / peak requested) of the pool on the LongNet
//    training trace of attention_trace.hpp, replayed against an upstream that
//    reserves address space only (so GiB-sized device-like traces cost no RAM);
//  * growth over a long replay: 3600 training steps (an hour at one step a
//    second) after a warm-up step set - reserved bytes and upstream calls must
//    not grow.
// JSON with --benchmark_out=<file> --benchmark_out_format=json; a summary
// table is printed at the end.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attention_trace.hpp"
#include "dilated/dilated_config.hpp"
#include "memory/errors.hpp"
#include "memory/host_resource.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"
#if DILATED_ENABLE_CUDA
#include <cuda_runtime.h>

#include "memory/cuda_resources.hpp"
#endif

namespace {

using namespace dilated::memory;
constexpr std::size_t MiB = 1024 * 1024;

// Address space without memory (PROT_NONE, MAP_NORESERVE): the pool never
// touches what it manages, so traces of device-sized buffers replay here.
class AddressSpaceResource final : public MemoryResource {
 public:
  std::string name() const override { return "address-space"; }
  MemoryKind kind() const override { return MemoryKind::Device; }
  std::size_t max_alignment() const override { return 4096; }
  std::size_t max_bytes() const override { return std::size_t(1) << 46; }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t, Stream) override {
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw OutOfMemory("address-space: mmap failed");
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t, Stream) override { munmap(p, bytes); }
};

void BM_Malloc(benchmark::State& state) {
  const std::size_t n = state.range(0);
  for (auto _ : state) {
    void* p = std::malloc(n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
}

template <bool Tracked>
void BM_Pool(benchmark::State& state) {
  static HostResource host;
  static PoolResource pool(host);
  static TrackingResource tracked(pool);
  MemoryResource& r = Tracked ? static_cast<MemoryResource&>(tracked) : pool;
  const std::size_t n = state.range(0);
  for (auto _ : state) {
    void* p = r.allocate(n);
    benchmark::DoNotOptimize(p);
    r.deallocate(p, n);
  }
}

// 64 live blocks of mixed sizes (256 B .. 4 MiB), allocated then freed in a
// shuffled order: splitting and coalescing on every round. Time per op pair.
std::vector<std::size_t> mixed_sizes() {
  std::mt19937_64 rng(7);
  std::vector<std::size_t> s(64);
  for (auto& x : s) x = std::size_t(256) << (rng() % 15);
  return s;
}
void BM_MallocMixed(benchmark::State& state) {
  const auto sizes = mixed_sizes();
  std::vector<void*> p(sizes.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < sizes.size(); ++i) p[i] = std::malloc(sizes[i]);
    benchmark::DoNotOptimize(p.data());
    for (std::size_t i = 0; i < sizes.size(); ++i) std::free(p[(i * 37) % sizes.size()]);
  }
  state.SetItemsProcessed(state.iterations() * sizes.size());
}
void BM_PoolMixed(benchmark::State& state) {
  static HostResource host;
  static PoolResource pool(host);
  const auto sizes = mixed_sizes();
  std::vector<void*> p(sizes.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < sizes.size(); ++i) p[i] = pool.allocate(sizes[i]);
    benchmark::DoNotOptimize(p.data());
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::size_t j = (i * 37) % sizes.size();
      pool.deallocate(p[j], sizes[j]);
    }
  }
  state.SetItemsProcessed(state.iterations() * sizes.size());
}

// Replays `ops` on r; returns the number of operations.
std::size_t replay(MemoryResource& r, const std::vector<bench::TraceOp>& ops,
                   std::vector<void*>& slot) {
  for (const auto& op : ops) {
    if (op.allocate) slot[op.id] = r.allocate(op.bytes);
    else r.deallocate(slot[op.id], op.bytes);
  }
  return ops.size();
}
std::uint32_t slots(const std::vector<bench::TraceOp>& ops) {
  std::uint32_t n = 0;
  for (const auto& op : ops) n = std::max(n, op.id + 1);
  return n;
}

void BM_AttentionTraceFragmentation(benchmark::State& state) {
  const auto ops = bench::attention_trace(static_cast<int>(state.range(0)), 2026);
  std::vector<void*> slot(slots(ops));
  PoolStats s;
  for (auto _ : state) {
    AddressSpaceResource space;
    PoolResource pool(space);
    replay(pool, ops, slot);
    s = pool.stats();
  }
  state.counters["fragmentation"] = s.fragmentation();
  state.counters["peak_reserved_GiB"] = s.peak_reserved / double(1024 * MiB);
  state.counters["peak_requested_GiB"] = s.peak_requested / double(1024 * MiB);
  state.counters["upstream_allocations"] = s.upstream_allocations;
  state.counters["ops"] = ops.size();
  state.SetItemsProcessed(state.iterations() * ops.size());
}

// An hour of training at one step a second: 3600 steps after a warm-up of 16.
void BM_AttentionTraceLongReplay(benchmark::State& state) {
  const int warm_steps = 16;
  const auto ops = bench::attention_trace(warm_steps, 2026);
  const auto long_ops = bench::attention_trace(static_cast<int>(state.range(0)), 7);
  std::vector<void*> slot(std::max(slots(ops), slots(long_ops)));
  double growth = 0, upstream_growth = 0, frag = 0;
  std::size_t replayed = 0;
  for (auto _ : state) {
    AddressSpaceResource space;
    PoolResource pool(space);
    replay(pool, ops, slot);
    const PoolStats warm = pool.stats();
    replayed += replay(pool, long_ops, slot);
    const PoolStats end = pool.stats();
    growth = double(end.peak_reserved) - double(warm.peak_reserved);
    upstream_growth = double(end.upstream_allocations) - double(warm.upstream_allocations);
    frag = end.fragmentation();
  }
  state.counters["steps"] = state.range(0);
  state.counters["reserved_growth_bytes"] = growth;
  state.counters["upstream_allocations_after_warmup"] = upstream_growth;
  state.counters["fragmentation"] = frag;
  state.SetItemsProcessed(replayed);
}

#if DILATED_ENABLE_CUDA
// Device latency (run on the H100): cudaMallocAsync + cudaFreeAsync on one
// stream, against the pool over it. Both only enqueue; no synchronisation.
void BM_CudaMallocAsync(benchmark::State& state) {
  cudaStream_t stream;
  if (cudaStreamCreate(&stream) != cudaSuccess) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const std::size_t n = state.range(0);
  for (auto _ : state) {
    void* p = nullptr;
    cudaMallocAsync(&p, n, stream);
    cudaFreeAsync(p, stream);
  }
  cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
}
void BM_PoolOverCudaAsync(benchmark::State& state) {
  cudaStream_t stream;
  if (cudaStreamCreate(&stream) != cudaSuccess) {
    state.SkipWithError("no CUDA device");
    return;
  }
  {
    CudaAsyncResource device;
    PoolResource pool(device);
    const std::size_t n = state.range(0);
    const Stream s{stream};
    for (auto _ : state) {
      void* p = pool.allocate(n, kDefaultAlignment, s);
      benchmark::DoNotOptimize(p);
      pool.deallocate(p, n, kDefaultAlignment, s);
    }
    cudaStreamSynchronize(stream);
  }
  cudaStreamDestroy(stream);
}
#endif

void sizes(benchmark::internal::Benchmark* b) {
  for (long n : {64l, 4096l, 65536l, 1l << 20, 16l << 20}) b->Arg(n);
}

}  // namespace

BENCHMARK(BM_Malloc)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Pool, false)->Name("BM_Pool")->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Pool, true)->Name("BM_TrackedPool")->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Pool, false)->Name("BM_Pool")->Arg(4096)->Threads(2);
BENCHMARK(BM_MallocMixed);
BENCHMARK(BM_PoolMixed);
BENCHMARK(BM_AttentionTraceFragmentation)->Arg(16)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionTraceLongReplay)->Arg(3600)->Iterations(1)->Unit(benchmark::kMillisecond);
#if DILATED_ENABLE_CUDA
BENCHMARK(BM_CudaMallocAsync)->Apply(sizes);
BENCHMARK(BM_PoolOverCudaAsync)->Apply(sizes);
#endif

namespace {
// Collects runs for the summary table, then prints them like the console.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) runs_.push_back(r);
    ConsoleReporter::ReportRuns(runs);
  }
  void print_table() const {
    std::map<std::string, double> malloc_ns;
    for (const Run& r : runs_) {
      const std::string name = r.benchmark_name();
      if (name.rfind("BM_Malloc/", 0) == 0) malloc_ns[name.substr(10)] = r.GetAdjustedRealTime();
    }
    std::printf("\n| benchmark | time per op | vs malloc | notes |\n|---|---|---|---|\n");
    for (const Run& r : runs_) {
      const std::string name = r.benchmark_name();
      std::string ratio = "", notes;
      const auto slash = name.find('/');
      if (slash != std::string::npos && malloc_ns.count(name.substr(slash + 1)) &&
          name.find("threads") == std::string::npos) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2fx", r.GetAdjustedRealTime() / malloc_ns.at(name.substr(slash + 1)));
        ratio = buf;
      }
      for (const auto& c : r.counters) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%s%s=%.4g", notes.empty() ? "" : ", ", c.first.c_str(),
                      double(c.second.value));
        notes += buf;
      }
      std::printf("| %s | %.1f %s | %s | %s |\n", name.c_str(), r.GetAdjustedRealTime(),
                  benchmark::GetTimeUnitString(r.time_unit), ratio.c_str(), notes.c_str());
    }
  }

 private:
  std::vector<Run> runs_;
};
}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  TableReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_table();
  benchmark::Shutdown();
  return 0;
}
