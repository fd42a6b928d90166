#!/usr/bin/env bash
# fa3win request 2 (4 H100s): src/dist with bf16 tensors on the windowed
# cuda_fa3 calls - perf_tests/run_multi_gpu.sh in its bf16 mode: the NCCL
# tests at P = 1, 2, 4 (float cases + bf16 on cuda_fa3), cuda_fa3 on every GPU
# at once, weak (fixed tokens per GPU) and strong (fixed N) scaling for
# LongNet and causal dense (zigzag) in bf16, and compute-sanitizer memcheck
# and racecheck over a 2-rank bf16 run.
#   bash .deps/fa3win-run/driver2.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3win2}; mkdir -p "$O"
cp "$0" "$O/driver.sh"
cp perf_tests/run_multi_gpu.sh "$O/run_multi_gpu.sh"
export PATH=/usr/local/cuda/bin:$PATH
MEMCHECK_TIMEOUT=150 timeout -k 10 460 stdbuf -oL bash perf_tests/run_multi_gpu.sh "$B" "$O" bf16
echo "run_multi_gpu.sh rc=$?"
