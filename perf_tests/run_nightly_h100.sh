#!/usr/bin/env bash
# Nightly performance-regression run on one H100 (issue 8): a cuda_fa3 subset
# (dense d64/d128 and causal forward, dense backward, LongNet forward at 1M
# tokens, block-sparse 90% at 64K), each the median of 3 repetitions, JSON out,
# plus, where BIN also holds a Kokkos-CUDA bench_attention, the portable float
# GPU forward (LongNet d128 at 256K tokens),
# then compare_benchmarks.py against perf_tests/baselines/h100.json, every
# benchmark normalised by the cuBLAS bf16 GEMM (bench_gpu_reference) of the
# same run.
#   [BASELINE_FILE=where --record writes] run_nightly_h100.sh BIN OUT [--record|--record-best [NOTE]]
# BIN holds bench_fa3 and bench_gpu_reference (a -DDILATED_ENABLE_CUDA=ON
# -DDILATED_ENABLE_BENCHMARKS=ON build) and the libraries they need.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "${1:?usage: run_nightly_h100.sh BIN OUT [--record [NOTE]]}" && pwd)
out=${2:?usage: run_nightly_h100.sh BIN OUT [--record [NOTE]]}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
common=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true
        --benchmark_out_format=json --benchmark_min_time=0.3)
"$bin/bench_gpu_reference" "${common[@]}" --benchmark_out="$out/reference.json" > /dev/null
"$bin/bench_fa3" "${common[@]}" --benchmark_out="$out/fa3.json" \
  --benchmark_filter='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128)/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:0/|BM_Fa3BlockSparseVsDense/seq:65536/' \
  > /dev/null
runs=("$out/reference.json" "$out/fa3.json")
if [ -x "$bin/bench_attention" ]; then  # a Kokkos-CUDA build: its float forward on the GPU
  "$bin/bench_attention" "${common[@]}" --benchmark_out="$out/portable.json" \
    --benchmark_filter='BM_Attention/kind:2/seq:262144/heads:16/dim:128/bwd:0' > /dev/null
  runs+=("$out/portable.json")
fi
reference=$(python3 -c 'import json,sys; print(next(b["run_name"] for b in json.load(open(sys.argv[1]))["benchmarks"]))' "$out/reference.json")
if [ "${3:-}" = --record ] || [ "${3:-}" = --record-best ]; then
  best=(); [ "$3" = --record-best ] && best=(--keep-best)
  exec python3 "$here/compare_benchmarks.py" "${runs[@]}" \
    --record "${BASELINE_FILE:-$here/baselines/h100.json}" --machine h100 --reference "$reference" \
    --note "${4:-}" "${best[@]}"
fi
exec python3 "$here/compare_benchmarks.py" "${runs[@]}" \
  --baseline "$here/baselines/h100.json"
