#!/usr/bin/env bash
# fa3win request 3 (4 H100s): request 2's bf16 scaling after the backward fixes
# (workspace pool that survives synchronisation; v2/v2p for equal windows of
# whole segments; vectorised gradient store/add), with A/B runs that attribute
# the gain, and the correctness checks the changed code needs.
#   bash .deps/fa3win-run/driver3.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3win3}; mkdir -p "$O"
cp "$0" "$O/driver.sh"; cp perf_tests/run_multi_gpu.sh "$O/run_multi_gpu.sh"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
echo "=== 1. test_fa3_window + test_fa3_backward, sharded over the 4 GPUs ==="
for g in 0 1 2 3; do
  ( export CUDA_VISIBLE_DEVICES=$g GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$g
    timeout 100 "$B/test_fa3_window" --gtest_color=no > "$O/test_fa3_window_$g.log" 2>&1
    timeout 120 "$B/test_fa3_backward" --gtest_color=no > "$O/test_fa3_backward_$g.log" 2>&1 ) &
done
wait
for t in test_fa3_window test_fa3_backward; do
  echo "$t: $(cat "$O"/${t}_*.log | grep -E '^\[  (PASSED|FAILED) ' | sort | uniq -c | tr '\n' ' ')"
  cat "$O"/${t}_*.log | grep -E '^\[  FAILED  \] .*/' | sed 's/, where.*//' | sort -u | head -10
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 2. memcheck: windowed backward through v2p (equal windows of whole segments) ==="
CUDA_VISIBLE_DEVICES=0 timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/test_fa3_window" \
  --gtest_color=no --gtest_filter='*aligned_longnet_d128_causal_bf16:*aligned_mixed_d128_bf16:*aligned_dense_d64_fp16' \
  > "$O/memcheck_aligned.log" 2>&1
echo "rc=$? $(grep -E 'ERROR SUMMARY' "$O/memcheck_aligned.log" | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/memcheck_aligned.log" | tr '\n' ' ')"
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 3. run_multi_gpu.sh bf16 (tests at P = 1, 2, 4; scaling; no sanitizers) ==="
SANITIZE=0 timeout -k 10 240 stdbuf -oL bash perf_tests/run_multi_gpu.sh "$B" "$O" bf16 | grep -v -E '^(  |Legend|GPU[0-9]|	)' 
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 4. A/B: weak LongNet bf16 (64K tokens/GPU) with one fix undone ==="
ab() {  # label P env...
  local label=$1 p=$2; shift 2
  env "$@" DILATED_LAUNCHER=plain DILATED_LAUNCH_TIMEOUT=60 perf_tests/launch_ranks.sh "$p" "$B/bench_seq_parallel_nccl" \
    --label "$label" --dtype bf16 --seq-per-rank 65536 --heads 16 --dim 128 \
    --branches "2048:1,4096:2,8192:4,16384:6,32768:12,N:N/16384" --iters 3 > "$O/ab_$label.log" 2>&1
  echo "$label rc=$? $(tr -d '\n' < "$O/ab_$label.log" | grep -o '{.*}' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("P=%d fwd %.4f s bwd %.4f s, bwd exposed comm %.2f ms" % (r["ranks"], r["forward_s"], r["backward_s"], 1e3*r["backward_exposed_comm_s"]))' 2>&1 | tail -n 1)"
}
ab p1-v1-windows 1 DILATED_FA3_BWD=v1
ab p4-v1-windows 4 DILATED_FA3_BWD=v1
ab p4-default-pool 4 DILATED_FA3_WORKSPACE=async
ab p4-v1-default-pool 4 DILATED_FA3_BWD=v1 DILATED_FA3_WORKSPACE=async
echo "total elapsed $(( $(date +%s) - t0 )) s"
