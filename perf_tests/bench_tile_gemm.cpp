// bench_tile_gemm: the tile product inside the attention kernels (64 x N x K,
// float), ours (details/tile_gemm.hpp) against Kokkos Kernels'
// KokkosBatched::TeamGemm, on one team of the default host execution space.
// This is the measurement behind the choice of tile_gemm over TeamGemm.
//   GFLOP/s = 2 M N K / time.
#include <benchmark/benchmark.h>

#include <KokkosBatched_Gemm_Decl.hpp>
#include <KokkosBatched_Gemm_Team_Impl.hpp>
#include <Kokkos_Core.hpp>
#include <dilated/details/tile_gemm.hpp>

namespace {

using Exec = Kokkos::DefaultHostExecutionSpace;
using Policy = Kokkos::TeamPolicy<Exec>;
using View2 = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace>;

constexpr int kReps = 2000;  // products per launch, so launch cost is negligible

struct Operands {
  View2 a, b, c;
  Operands(int m, int n, int k) : a("a", m, k), b("b", k, n), c("c", m, n) {
    Kokkos::deep_copy(a, 0.5f);
    Kokkos::deep_copy(b, 0.25f);
  }
};

// Args: N (columns), K (inner).
void BM_TileGemm_Ours(benchmark::State& state) {
  const int m = 64, n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  Operands o(m, n, k);
  for (auto _ : state) {
    Kokkos::parallel_for(Policy(Exec(), 1, 1), KOKKOS_LAMBDA(const Policy::member_type& team) {
      for (int r = 0; r < kReps; ++r)
        dilated::details::team_tile_gemm(team, m, n, k, o.a.data(), k, o.b.data(), n, o.c.data(), n,
                                         true);
    });
    Kokkos::fence();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * kReps * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TileGemm_KokkosBatchedTeamGemm(benchmark::State& state) {
  const int m = 64, n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  Operands o(m, n, k);
  for (auto _ : state) {
    Kokkos::parallel_for(Policy(Exec(), 1, 1), KOKKOS_LAMBDA(const Policy::member_type& team) {
      for (int r = 0; r < kReps; ++r)
        KokkosBatched::TeamGemm<Policy::member_type, KokkosBatched::Trans::NoTranspose,
                                KokkosBatched::Trans::NoTranspose,
                                KokkosBatched::Algo::Gemm::Blocked>::invoke(team, 1.0f, o.a, o.b,
                                                                            1.0f, o.c);
    });
    Kokkos::fence();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * kReps * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_TileGemm_Ours)->ArgNames({"N", "K"})->Args({64, 128})->Args({128, 128})->Args({128, 64})->UseRealTime();
BENCHMARK(BM_TileGemm_KokkosBatchedTeamGemm)->ArgNames({"N", "K"})->Args({64, 128})->Args({128, 128})->Args({128, 64})->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
