#!/usr/bin/env bash
# distfa3 request 1 (4 H100s): the ring backward's per-step costs after
# (a) zeroing only the kept rows of the travelling dK/dV blocks (src/dist) and
# (b) zeroing/adding back only the kept rows of the windowed cuda_fa3
# backward's fp32 accumulators; correctness, the bf16 scaling series with a
# per-phase breakdown (--phases), and an A/B with each change undone.
#   bash .deps/distfa3-run/driver.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/distfa3}; mkdir -p "$O"
cp "$0" "$O/driver.sh"; cp perf_tests/run_multi_gpu.sh "$O/run_multi_gpu.sh"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
echo "=== 1. test_fa3_window (windowed calls vs float64; the kept-row accumulators), sharded over 4 GPUs ==="
for g in 0 1 2 3; do
  CUDA_VISIBLE_DEVICES=$g GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$g timeout 100 "$B/test_fa3_window" \
    --gtest_color=no > "$O/test_fa3_window_$g.log" 2>&1 &
done
wait
echo "test_fa3_window: $(cat "$O"/test_fa3_window_*.log | grep -E '^\[  (PASSED|FAILED) ' | sort | uniq -c | tr '\n' ' ')"
cat "$O"/test_fa3_window_*.log | grep -E '^\[  FAILED  \] .*/' | sed 's/, where.*//' | sort -u | head -10
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 2. run_multi_gpu.sh bf16 --phases (tests at P = 1, 2, 4; scaling; no sanitizers) ==="
SANITIZE=0 BENCH_ARGS=--phases timeout -k 10 270 stdbuf -oL bash perf_tests/run_multi_gpu.sh "$B" "$O" bf16 \
  | grep -v -E '^(  |Legend|GPU[0-9]|	)'
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 3. A/B: weak LongNet bf16 (64K tokens/GPU), before = both changes undone ==="
ab() {  # label P env...
  local label=$1 p=$2; shift 2
  env "$@" DILATED_LAUNCHER=plain DILATED_LAUNCH_TIMEOUT=60 perf_tests/launch_ranks.sh "$p" "$B/bench_seq_parallel_nccl" \
    --label "$label" --dtype bf16 --seq-per-rank 65536 --heads 16 --dim 128 \
    --branches "2048:1,4096:2,8192:4,16384:6,32768:12,N:N/16384" --iters 3 --phases > "$O/ab_$label.log" 2>&1
  echo "$label rc=$? $(tr -d '\n' < "$O/ab_$label.log" | grep -o '{.*}' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("P=%d fwd %.4f s bwd %.4f s, bwd exposed comm %.2f ms; phases %s" % (r["ranks"], r["forward_s"], r["backward_s"], 1e3*r["backward_exposed_comm_s"], {k: round(v, 1) for k, v in r.get("backward_phases_ms_max_rank", {}).items() if v >= 0.05}))' 2>&1 | tail -n 1)"
}
ab p4-before 4 DILATED_FA3_WINDOW_ACC=whole DILATED_DIST_ZERO_WHOLE=1
ab p4-whole-fa3-acc 4 DILATED_FA3_WINDOW_ACC=whole
ab p4-whole-dist-zero 4 DILATED_DIST_ZERO_WHOLE=1
ab p2-before 2 DILATED_FA3_WINDOW_ACC=whole DILATED_DIST_ZERO_WHOLE=1
echo "total elapsed $(( $(date +%s) - t0 )) s"
