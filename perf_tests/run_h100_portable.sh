#!/usr/bin/env bash
# The portable kernels on Kokkos' CUDA backend (issue 3's H100 check): build
# the suite and benchmarks with a CUDA-enabled Kokkos, run the whole
# correctness suite on the GPU, then the LongNet benchmark and the PyTorch
# gather-SDPA-scatter reference on the same GPU. Writes logs and JSON to
# ${OUT:-perf_tests/results/h100-tmp}.
#
#   KOKKOS_ROOT=<prefix of a Kokkos (+ Kokkos Kernels) built with CUDA, Hopper90>
#   NVCC_WRAPPER=<that Kokkos' bin/nvcc_wrapper>     (the C++ compiler to use)
#
# Building that Kokkos is not part of this repository (see README: H100).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-perf_tests/results/h100-tmp}
mkdir -p "$out"
: "${KOKKOS_ROOT:?set KOKKOS_ROOT}" "${NVCC_WRAPPER:?set NVCC_WRAPPER}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
cmake -S . -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$NVCC_WRAPPER" \
  -DCMAKE_PREFIX_PATH="$KOKKOS_ROOT" -DDILATED_ENABLE_TESTS=ON -DDILATED_ENABLE_BENCHMARKS=ON \
  2>&1 | tail -3
cmake --build build/cuda -j "$(nproc)" 2>&1 | tail -3
(cd build/cuda && OMP_NUM_THREADS=4 ctest -j 8 --output-on-failure 2>&1 | tee "$out/ctest.log" | tail -15)
# LongNet, paper schedule, 16 heads, head_dim 128, float32, N = 1M.
build/cuda/perf_tests/bench_attention \
  --benchmark_filter='BM_Attention/kind:2/seq:(65536|1048576)/heads:(4|16)/dim:128/bwd:0' \
  --benchmark_min_time=0.01 --benchmark_out="$out/bench_cuda.json" --benchmark_out_format=json \
  2>&1 | tail -6
# Peer in the same run on the same GPU: PyTorch gather-SDPA-scatter (bf16).
PYTHONUNBUFFERED=1 python3 perf_tests/cpu_peers.py --gpu-longnet | tee "$out/torch_longnet_gpu.json"
