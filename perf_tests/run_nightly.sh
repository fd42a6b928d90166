#!/usr/bin/env bash
# Nightly performance-regression run: the benchmark subset below, each a median
# of 3 repetitions (src/dist's ring: best of 3 mpirun runs), JSON out, then compare_benchmarks.py against
# perf_tests/baselines/<machine>.json (normalised by the tile-product
# reference kernel of the same run). ctest -L nightly (preset `nightly`) runs it.
#   run_nightly.sh BUILD_DIR [MACHINE] [--record|--record-best [NOTE]]
# MACHINE defaults to $DILATED_PERF_MACHINE, else cpu-zen5-2core. --record
# writes the baseline instead of comparing (date and note stored in it);
# --record-best keeps, per benchmark, the faster of the stored and new times
# (noise on a shared machine only slows runs down).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run_nightly.sh BUILD_DIR [MACHINE] [--record [NOTE]]}
machine=${2:-${DILATED_PERF_MACHINE:-cpu-zen5-2core}}
out="$build/nightly"
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} OMP_PROC_BIND=${OMP_PROC_BIND:-false}
reference='BM_TileGemm_Ours/N:128/K:128/real_time'
common=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true
        --benchmark_out_format=json)
# The reference kernel: one team's register-blocked tile product, the inner loop of
# every attention kernel, so machine speed and load move it like the rest.
"$build/perf_tests/bench_tile_gemm" --benchmark_filter='^BM_TileGemm_Ours/N:128/K:128' \
  "${common[@]}" --benchmark_out="$out/tile_gemm.json" >/dev/null
# Dense, causal and LongNet, d = 64 and 128, forward and backward, small enough
# for a few minutes in all; the 256K/1M-token cases stay with the peer scripts.
"$build/perf_tests/bench_attention" \
  --benchmark_filter='^BM_Attention/kind:[0-2]/seq:(4096|16384)/heads:4/' \
  "${common[@]}" --benchmark_out="$out/attention.json" >/dev/null
runs=("$out/tile_gemm.json" "$out/attention.json")
# src/dist: one forward + backward over 2 MPI ranks with a cross-rank branch
# (the ring, its overlap and the accumulator return), when the build has MPI.
dist_bench="$build/perf_tests/dist/bench_dist_overlap"
if [ -x "$dist_bench" ] && command -v mpirun >/dev/null; then
  rm -f "$out/dist_overlap.jsonl"
  for rep in 1 2 3; do  # best of 3 runs, as the repetitions above
    OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      timeout 600 mpirun -np 2 --oversubscribe --bind-to none "$dist_bench" --seq 8192 \
      --heads 4 --dim 64 --branches 2048:1,8192:2 --iters 2 --progress-thread \
      >>"$out/dist_overlap.jsonl"
  done
  python3 "$here/dist_overlap_to_gbench.py" "$out/dist_overlap.jsonl" "$out/dist_overlap.json"
  runs+=("$out/dist_overlap.json")
fi
if [ "${3:-}" = --record ] || [ "${3:-}" = --record-best ]; then
  best=(); [ "$3" = --record-best ] && best=(--keep-best)
  exec python3 "$here/compare_benchmarks.py" "${runs[@]}" \
    --record "$here/baselines/$machine.json" --machine "$machine" --reference "$reference" \
    --note "${4:-}" "${best[@]}"
fi
exec python3 "$here/compare_benchmarks.py" "${runs[@]}" \
  --baseline "$here/baselines/$machine.json"
