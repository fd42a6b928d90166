// dilated/details/gpu_forward_variant.hpp - which forward kernel a
// Plan<Kokkos::Cuda> runs for float tensors, chosen once per plan from
// DILATED_PORTABLE_GPU_FORWARD so one GPU session can compare them (A/B runs).
// Host-only code: it compiles on every backend.
#pragma once

#include <cstring>

namespace dilated {
namespace details {

enum class GpuForwardVariant {
  kClassic,     // "classic": ForwardBranchKernel, the host-shaped kernel
  kSimt128,     // "gpu128": forward_kernel_gpu.hpp, 128-thread teams
  kSimt256,     // "gpu256": the same, 256-thread teams
  kPipe128,     // "pipe128": forward_kernel_gpu_pipelined.hpp, 128 threads, 2 teams/SM
  kPipe256,     // "pipe256": the same, 256-thread teams
  kPipe256s,    // "pipe256s": pipe256 with 4 x 8 thread warps (SPLIT rows), 5% slower
  kPipe256l,    // "pipe256l": pipe256 with lean staging (32-bit row offsets, float4 rows)
};
// (Removed after pipe256l: "async128" / "async128x3", a resident 32-query Q
// tile with cp.async K/V, 11% / 5% slower than pipe256 on the H100,
// perf_tests/results/h100-portable-2026-11-27d-gpu-forward/; those names now
// give the default.)

// pipe256l: fastest on the H100 (2026-11-27, LongNet d128 fp32 at 1M tokens:
// 26.1 TFLOP/s = 42.7% of the measured fp32 FMA rate vs pipe256 22.5, pipe128
// 21.0, gpu256 20.2, gpu128 17.6; perf_tests/results/
// h100-portable-2026-11-27e-gpu-forward/ and -27b-), Kokkos-CUDA float suites
// pass, compute-sanitizer racecheck and memcheck clean. Launches it cannot
// serve (head_dim not 32/64/128, strided or unaligned rows, block-sparse)
// run pipe256.
constexpr GpuForwardVariant kDefaultGpuForward = GpuForwardVariant::kPipe256l;

// `name` from DILATED_PORTABLE_GPU_FORWARD (null: unset); unknown names give
// the default.
inline GpuForwardVariant parse_gpu_forward_variant(const char* name) {
  if (!name) return kDefaultGpuForward;
  struct Entry {
    const char* name;
    GpuForwardVariant v;
  };
  static constexpr Entry kNames[] = {
      {"classic", GpuForwardVariant::kClassic},     {"gpu", kDefaultGpuForward},
      {"gpu128", GpuForwardVariant::kSimt128},      {"gpu256", GpuForwardVariant::kSimt256},
      {"pipe128", GpuForwardVariant::kPipe128},     {"pipe256", GpuForwardVariant::kPipe256},
      {"pipe256s", GpuForwardVariant::kPipe256s},   {"pipe256l", GpuForwardVariant::kPipe256l},
  };
  for (const Entry& e : kNames)
    if (std::strcmp(name, e.name) == 0) return e.v;
  return kDefaultGpuForward;
}

}  // namespace details
}  // namespace dilated
