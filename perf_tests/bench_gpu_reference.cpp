// bench_gpu_reference: the GPU's reference kernel for the nightly regression
// check (perf_tests/run_nightly_h100.sh) - a cuBLAS bf16 GEMM (fp32
// accumulation) of 8192^3, the same work class as attention's tile products.
// compare_benchmarks.py divides every benchmark's time by this one's from the
// same run, so clocks, thermals and co-tenants move the reference with the
// rest. Also reports TFLOP/s (2 M N K per product). Manual time: CUDA events.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

void BM_CublasGemmBf16(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const std::size_t elems = static_cast<std::size_t>(n) * n;
  __nv_bfloat16 *a = nullptr, *b = nullptr, *c = nullptr;
  if (cudaMalloc(&a, elems * 2) != cudaSuccess || cudaMalloc(&b, elems * 2) != cudaSuccess ||
      cudaMalloc(&c, elems * 2) != cudaSuccess) {
    state.SkipWithError("cudaMalloc failed (no GPU?)");
    return;
  }
  {  // random operands (zeros would run faster than real data)
    std::vector<__nv_bfloat16> h(elems);
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (auto& x : h) x = __float2bfloat16(d(rng));
    cudaMemcpy(a, h.data(), elems * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(b, h.data(), elems * 2, cudaMemcpyHostToDevice);
  }
  cublasHandle_t handle;
  cublasCreate(&handle);
  const float alpha = 1.f, beta = 0.f;
  auto gemm = [&] {
    return cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b,
                        CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
  };
  if (gemm() != CUBLAS_STATUS_SUCCESS) state.SkipWithError("cublasGemmEx failed");
  cudaDeviceSynchronize();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    cudaEventRecord(start);
    gemm();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
  }
  state.counters["TFLOP/s"] = benchmark::Counter(2.0 * n * n * static_cast<double>(n) * 1e-12,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
}
BENCHMARK(BM_CublasGemmBf16)->Arg(8192)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace

BENCHMARK_MAIN();
