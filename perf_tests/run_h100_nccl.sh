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
# Any skip or failure means the GPU path was not proven: fail loudly.
if grep -qE "SKIPPED|FAILED" "$out/nccl_one_rank.log"; then
  echo "test_nccl_one_rank skipped or failed a test (see $out/nccl_one_rank.log)" >&2
  exit 1
fi
# The MPI transport with device Views: two ranks on the one GPU, if this machine
# has an MPI (the test skips, saying so, when that MPI is not CUDA-aware).
if command -v mpirun > /dev/null; then
  cmake -S . -B build/cuda-mpi -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$NVCC_WRAPPER" -DCMAKE_PREFIX_PATH="$KOKKOS_ROOT" \
    -DDILATED_ENABLE_MPI=ON -DDILATED_ENABLE_TESTS=ON 2>&1 | tail -3
  cmake --build build/cuda-mpi -j "$(nproc)" --target test_seq_parallel 2>&1 | tail -3
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    mpirun -np 2 --oversubscribe build/cuda-mpi/unit_tests/dist/test_seq_parallel \
    --gtest_filter='SeqParallelDevice*' 2>&1 | tee "$out/mpi_device.log" | tail -8
fi
