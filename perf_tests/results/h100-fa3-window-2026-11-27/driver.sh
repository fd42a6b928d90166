#!/usr/bin/env bash
# fa3win request 1 (one H100): windowed cuda_fa3 calls against float64, the
# whole-sequence cuda_fa3 suites (their tile decode changed), src/dist on one
# rank with bf16 on cuda_fa3, memcheck of small windowed cases, whole-sequence
# forward speed, and the one-GPU points of the bf16 scaling series.
#   bash .deps/fa3win-run/driver1.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3win1}; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=WARN
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > "$O/machine.txt"
cat "$O/machine.txt"
summ() {  # summary of a gtest log
  echo "$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -12
  grep -E 'Failure|error:|Expected|Which is|max \|out' "$1" | head -12
}
t0=$(date +%s)
echo "=== 1. windowed cuda_fa3 calls vs float64 (test_fa3_window) ==="
timeout 170 "$B/test_fa3_window" --gtest_color=no > "$O/test_fa3_window.log" 2>&1; echo "rc=$?"; summ "$O/test_fa3_window.log"
echo "=== 2. whole-sequence cuda_fa3 suites ==="
timeout 100 "$B/test_fa3_forward" --gtest_color=no > "$O/test_fa3_forward.log" 2>&1; echo "forward rc=$?"; summ "$O/test_fa3_forward.log"
timeout 150 "$B/test_fa3_backward" --gtest_color=no > "$O/test_fa3_backward.log" 2>&1; echo "backward rc=$?"; summ "$O/test_fa3_backward.log"
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 3. test_nccl_multi_rank, one rank (float cases + bf16 on cuda_fa3) ==="
DILATED_LAUNCH_TIMEOUT=120 perf_tests/launch_ranks.sh 1 "$B/test_nccl_multi_rank" --gtest_color=no > "$O/test_nccl_np1.log" 2>&1
echo "rc=$?"; summ "$O/test_nccl_np1.log"; grep -E '^\[       OK \]' "$O/test_nccl_np1.log"
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 4. compute-sanitizer memcheck, small windowed cases ==="
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/test_fa3_window" --gtest_color=no \
  --gtest_filter='*r16_small_windows_d64_causal_bf16:*longnet_d128_causal_bf16:*dense_d128_bf16:*w_mod_r_d64_fp16:Fa3WindowMasked*' \
  > "$O/memcheck_window.log" 2>&1
echo "rc=$? $(grep -E 'ERROR SUMMARY' "$O/memcheck_window.log" | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/memcheck_window.log" | tr '\n' ' ')"
grep -E '^=========' "$O/memcheck_window.log" | head -8
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 5. whole-sequence forward speed (bf16, N = 16K, H = 16; 2026-11-27 run3: d128 620 TFLOP/s) ==="
timeout 60 "$B/bench_fa3" --benchmark_filter='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128)/' \
  --benchmark_min_time=0.3 --benchmark_out="$O/bench_fa3.json" --benchmark_out_format=json > "$O/bench_fa3.log" 2>&1
grep -E '^BM_' "$O/bench_fa3.log" | sed 's/min_time:1.000\/manual_time//' | awk '{print $1, $2, $3, $(NF-2), $(NF-1), $NF}'
echo "=== 6. one-rank bf16 points of the scaling series (SeqParallelPlan on cuda_fa3) ==="
run_bench() {  # label args...
  local label=$1; shift
  DILATED_LAUNCH_TIMEOUT=90 perf_tests/launch_ranks.sh 1 "$B/bench_seq_parallel_nccl" --label "$label" "$@" \
    > "$O/bench_$label.log" 2>&1
  echo "$label rc=$? $(tr -d '\n' < "$O/bench_$label.log" | grep -o '{.*}' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["backend"], "fwd %.4f s bwd %.4f s fwd %.1f TFLOP/s bwd %.1f TFLOP/s" % (r["forward_s"], r.get("backward_s",0), r["forward_tflops_per_gpu"], r.get("backward_tflops_per_gpu",0)))' 2>&1 | tail -n 1)"
}
longnet="2048:1,4096:2,8192:4,16384:6,32768:12,N:N/4096"
run_bench p1-longnet-bf16 --dtype bf16 --seq-per-rank 32768 --heads 16 --dim 128 --branches "$longnet" --iters 3
run_bench p1-zigzag-bf16 --dtype bf16 --seq-per-rank 16384 --heads 16 --dim 128 --branches N:1 --causal --zigzag --iters 3
echo "total elapsed $(( $(date +%s) - t0 )) s"
