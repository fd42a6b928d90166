#!/usr/bin/env bash
# AutoPlan dispatch on an H100 with Kokkos' CUDA backend: builds the library
# with cuda_fa3 and NCCL against a CUDA-enabled Kokkos, then runs
# test_auto_plan (float Views -> portable kernels, bf16 Views -> cuda_fa3 vs
# the float64 reference, refusals with reasons), the cuda_fa3 suites and the
# one-rank NCCL test of src/dist. Logs go to ${OUT:-perf_tests/results/h100-tmp}.
#
#   KOKKOS_ROOT=<prefix of a Kokkos (+ Kokkos Kernels) built with CUDA, Hopper90>
#   NVCC_WRAPPER=<that Kokkos' bin/nvcc_wrapper>
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-perf_tests/results/h100-tmp}
mkdir -p "$out"
: "${KOKKOS_ROOT:?set KOKKOS_ROOT}" "${NVCC_WRAPPER:?set NVCC_WRAPPER}"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
grep -h "define KOKKOS_VERSION " "$KOKKOS_ROOT"/include/KokkosCore_config.h "$KOKKOS_ROOT"/include/Kokkos_Macros.hpp 2>/dev/null | head -n 1 | tee -a "$out/gpu.txt"
cmake -S . -B build/cuda-dispatch -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$NVCC_WRAPPER" \
  -DCMAKE_PREFIX_PATH="$KOKKOS_ROOT" -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DDILATED_ENABLE_CUDA=ON -DDILATED_ENABLE_NCCL=ON -DDILATED_ENABLE_TESTS=ON \
  2>&1 | tail -n 3
targets=(test_auto_plan)  # cuda_fa3 suites: see run_h100_fa3.sh (built with g++)
[ -f unit_tests/dist/test_nccl_one_rank.cpp ] && targets+=(test_nccl_one_rank)
cmake --build build/cuda-dispatch -j "$(nproc)" --target "${targets[@]}" 2>&1 | grep -E "error|FAILED" | head -n 20
for t in "${targets[@]}"; do
  exe=$(find build/cuda-dispatch -name "$t" -type f -perm -u+x | head -n 1)
  [ -n "$exe" ] || { echo "$t: not built"; continue; }
  timeout 300 "$exe" > "$out/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)|SKIPPED' "$out/$t.log" | tr '\n' ' ')"
done
