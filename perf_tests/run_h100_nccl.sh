#!/usr/bin/env bash
# src/dist on one H100 (issue 6): the NCCL transport with a one-rank
# communicator - a ring step to itself, the validation reduction, and
# SeqParallelPlan<Kokkos::Cuda> over NCCL against the float64 reference
# (unit_tests/dist/test_nccl_one_rank.cpp). Logs go to
# ${OUT:-perf_tests/results/h100-tmp}.
#
#   KOKKOS_ROOT=<prefix of a Kokkos (+ Kokkos Kernels) built with CUDA, Hopper90>
#   NVCC_WRAPPER=<that Kokkos' bin/nvcc_wrapper>
# NCCL and the CUDA runtime are taken from /usr/local/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-perf_tests/results/h100-tmp}
mkdir -p "$out"
: "${KOKKOS_ROOT:?set KOKKOS_ROOT}" "${NVCC_WRAPPER:?set NVCC_WRAPPER}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
cmake -S . -B build/cuda-nccl -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$NVCC_WRAPPER" -DCMAKE_PREFIX_PATH="$KOKKOS_ROOT" \
  -DCUDAToolkit_ROOT=/usr/local/cuda -DDILATED_ENABLE_NCCL=ON -DDILATED_ENABLE_TESTS=ON \
  2>&1 | tail -3
cmake --build build/cuda-nccl -j "$(nproc)" --target test_nccl_one_rank 2>&1 | tail -3
NCCL_DEBUG=${NCCL_DEBUG:-WARN} build/cuda-nccl/unit_tests/dist/test_nccl_one_rank 2>&1 \
  | tee "$out/nccl_one_rank.log" | tail -20
# Any skip means the run did not test the GPU path: fail loudly.
! grep -q "SKIPPED" "$out/nccl_one_rank.log"
