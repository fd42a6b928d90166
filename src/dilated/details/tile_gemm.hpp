// dilated/details/tile_gemm.hpp - register-blocked products of scratch tiles,
// the work-horse of the portable kernels:
//
//   C[M][N] = (accumulate ? C : 0) + A[M][K] * B[K][N]
//
// B and C are row-major (ldb, ldc); A is addressed as A[r * a_row + x * a_k],
// so it may be row-major (a_row = lda, a_k = 1) or transposed (a_row = 1,
// a_k = lda) without a copy.
// A team splits the (MR x NR) blocks of C over its threads. M must be a
// multiple of kTileMR and N of kTileNR (tiles are padded with zeros), K is
// free. Measured against Kokkos Kernels' KokkosBatched::TeamGemm (Blocked) on
// one Zen 5 core, 64x64x128 float: 115 vs 13.7 GFLOP/s, so the kernels use
// this (see perf_tests/bench_tile_gemm.cpp).
#pragma once

#include "dilated/details/simd.hpp"

namespace dilated {
namespace details {

// Block of C per thread: 8 rows x 32 columns (two AVX-512 float vectors).
constexpr int kTileMR = 8;
constexpr int kTileNR = 32;

#if DILATED_HOST_VECTOR
template <class Acc>
inline void micro_gemm_host(std::int64_t K, const Acc* A, std::int64_t a_row, std::int64_t a_k,
                            const Acc* B, std::int64_t ldb, Acc* C, std::int64_t ldc,
                            bool accumulate) {
  using V = HostVec<Acc>;
  using vec = typename V::type;
  constexpr int NV = kTileNR / V::lanes;
  vec c[kTileMR][NV];
  for (int r = 0; r < kTileMR; ++r)
    for (int v = 0; v < NV; ++v) c[r][v] = accumulate ? V::load(C + r * ldc + v * V::lanes) : vec{};
  for (std::int64_t x = 0; x < K; ++x) {
    vec b[NV];
    for (int v = 0; v < NV; ++v) b[v] = V::load(B + x * ldb + v * V::lanes);
    for (int r = 0; r < kTileMR; ++r) {
      const Acc a = A[r * a_row + x * a_k];
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < kTileMR; ++r)
    for (int v = 0; v < NV; ++v) V::store(C + r * ldc + v * V::lanes, c[r][v]);
}
#endif

// Portable fallback (device threads): a 2 x 4 register block, looping over
// the kTileMR x kTileNR block.
template <class Acc>
KOKKOS_INLINE_FUNCTION void micro_gemm_generic(std::int64_t K, const Acc* A, std::int64_t a_row,
                                               std::int64_t a_k, const Acc* B, std::int64_t ldb,
                                               Acc* C, std::int64_t ldc, bool accumulate) {
  for (int r0 = 0; r0 < kTileMR; r0 += 2)
    for (int j0 = 0; j0 < kTileNR; j0 += 4) {
      Acc c[2][4];
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 4; ++j) c[r][j] = accumulate ? C[(r0 + r) * ldc + j0 + j] : Acc(0);
      for (std::int64_t x = 0; x < K; ++x) {
        const Acc a0 = A[r0 * a_row + x * a_k], a1 = A[(r0 + 1) * a_row + x * a_k];
        for (int j = 0; j < 4; ++j) {
          const Acc b = B[x * ldb + j0 + j];
          c[0][j] += a0 * b;
          c[1][j] += a1 * b;
        }
      }
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 4; ++j) C[(r0 + r) * ldc + j0 + j] = c[r][j];
    }
}

template <class Member, class Acc>
KOKKOS_INLINE_FUNCTION void team_tile_gemm_strided(const Member& team, std::int64_t M,
                                                   std::int64_t N, std::int64_t K, const Acc* A,
                                                   std::int64_t a_row, std::int64_t a_k,
                                                   const Acc* B, std::int64_t ldb, Acc* C,
                                                   std::int64_t ldc, bool accumulate) {
  const std::int64_t nb = N / kTileNR;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (M / kTileMR) * nb),
                       [&](const std::int64_t blk) {
                         const std::int64_t i0 = (blk / nb) * kTileMR, j0 = (blk % nb) * kTileNR;
#if DILATED_HOST_VECTOR
                         micro_gemm_host(K, A + i0 * a_row, a_row, a_k, B + j0, ldb,
                                         C + i0 * ldc + j0, ldc, accumulate);
#else
                         micro_gemm_generic(K, A + i0 * a_row, a_row, a_k, B + j0, ldb,
                                            C + i0 * ldc + j0, ldc, accumulate);
#endif
                       });
}

// Row-major A (lda).
template <class Member, class Acc>
KOKKOS_INLINE_FUNCTION void team_tile_gemm(const Member& team, std::int64_t M, std::int64_t N,
                                           std::int64_t K, const Acc* A, std::int64_t lda,
                                           const Acc* B, std::int64_t ldb, Acc* C,
                                           std::int64_t ldc, bool accumulate) {
  team_tile_gemm_strided(team, M, N, K, A, lda, std::int64_t(1), B, ldb, C, ldc, accumulate);
}

KOKKOS_INLINE_FUNCTION std::int64_t round_up(std::int64_t x, std::int64_t m) {
  return (x + m - 1) / m * m;
}

}  // namespace details
}  // namespace dilated
