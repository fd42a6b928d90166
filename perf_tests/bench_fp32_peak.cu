// bench_fp32_peak.cu - the GPU's plain fp32 FMA rate, measured (issue 3's
// target for the portable forward on Kokkos' CUDA backend is a fraction of
// it, and the datasheet figure assumes a boost clock the card may not hold).
//
// Every thread runs kChains independent FMA chains (enough to cover the FMA
// latency with a few warps per scheduler) for `iters` iterations; the chains'
// sum is stored so the compiler keeps them. FLOPs = 2 * threads * kChains *
// iters. Prints the best of `reps` runs in TFLOP/s, plus the SM count and
// clock the driver reports. No tensor cores, no memory traffic.
//
//   bench_fp32_peak [iters=65536] [reps=5]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace {

constexpr int kChains = 8;
constexpr int kThreads = 256;

__global__ void fma_chains(float* out, int iters, float a, float b) {
  float x[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) x[c] = threadIdx.x * 1e-3f + c;
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) x[c] = fmaf(x[c], a, b);
  }
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kChains; ++c) s += x[c];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

int check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 65536;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int clock_khz = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
  // 8 blocks of 256 threads per SM: 64 warps, the SM's maximum.
  const int blocks = prop.multiProcessorCount * 8;
  float* out = nullptr;
  check(cudaMalloc(&out, sizeof(float) * blocks * kThreads), "cudaMalloc");
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  fma_chains<<<blocks, kThreads>>>(out, iters / 16, 0.999f, 1e-3f);  // warm-up, clocks up
  check(cudaDeviceSynchronize(), "warm-up");
  float best_ms = 1e30f;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(t0);
    fma_chains<<<blocks, kThreads>>>(out, iters, 0.999f, 1e-3f);
    cudaEventRecord(t1);
    check(cudaEventSynchronize(t1), "run");
    float ms = 0.f;
    cudaEventElapsedTime(&ms, t0, t1);
    if (ms < best_ms) best_ms = ms;
  }
  const double flops = 2.0 * blocks * kThreads * static_cast<double>(kChains) * iters;
  std::printf(
      "{\"device\": \"%s\", \"sms\": %d, \"clock_mhz\": %d, \"fp32_fma_tflops\": %.2f, "
      "\"ms\": %.3f, \"datasheet_style_tflops\": %.2f}\n",
      prop.name, prop.multiProcessorCount, clock_khz / 1000, flops / best_ms * 1e-9, best_ms,
      2.0 * 128 * prop.multiProcessorCount * clock_khz * 1e-9);
  cudaFree(out);
  return 0;
}
