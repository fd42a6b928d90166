#!/usr/bin/env bash
# fa3bwd request 1 (one H100): the head_dim 128 variants of the v2p backward
# (DILATED_FA3_BWD_SCHEDULE = p (v2p, default) | pw | pa | r | rw | ra) -
# float64 suites, compute-sanitizer on small shapes, then speed against
# cuDNN / FA2 (PyTorch SDPA) in the same call.
#   bash .deps/fa3bwd-run/driver1.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bwd1}; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt"
cat "$O/machine.txt"
summ() {  # one line per gtest log, plus the first failures
  echo "  $(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -8
  grep -E 'Failure|max \|' "$1" | head -6
}
t0=$(date +%s)
VARIANTS="${VARIANTS:-pw pa r rw ra}"
echo "=== 1. test_fa3_backward (default = v2p), then the V2Pipelined suite per variant ==="
timeout 200 "$B/test_fa3_backward" --gtest_color=no > "$O/test_fa3_backward.log" 2>&1; echo "default rc=$?"; summ "$O/test_fa3_backward.log"
for v in $VARIANTS; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout 100 "$B/test_fa3_backward" --gtest_color=no --gtest_filter='V2Pipelined/*' > "$O/test_fa3_backward_$v.log" 2>&1
  echo "$v rc=$?"; summ "$O/test_fa3_backward_$v.log"
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 2. test_fa3_window (equal windows' backward runs the v2 family at d128) per variant ==="
timeout 150 "$B/test_fa3_window" --gtest_color=no > "$O/test_fa3_window.log" 2>&1; echo "default rc=$?"; summ "$O/test_fa3_window.log"
for v in $VARIANTS; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout 100 "$B/test_fa3_window" --gtest_color=no --gtest_filter='*d128*:Fa3WindowMasked.*' > "$O/test_fa3_window_$v.log" 2>&1
  echo "$v rc=$?"; summ "$O/test_fa3_window_$v.log"
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 3. backward speed per variant (bf16, B1 H16 N16K d128, dense and causal) ==="
for v in p $VARIANTS; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout 60 "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:[01]/' --benchmark_min_time=0.3 --benchmark_out="$O/bwd_$v.json" > "$O/bwd_$v.log" 2>&1
  echo "rc=$? $(grep -E '^BM_' "$O/bwd_$v.log" | awk -v v=$v '{printf "%s kind%s %s ms %s | ", v, substr($1,21,1), $2, $6}')"
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 4. compute-sanitizer memcheck + racecheck, small d128 cases, per variant ==="
F='V2Pipelined/*/dense_d128_bf16_v2p:V2Pipelined/*/unkept_rows_d128_causal_fp16_v2p:V2Pipelined/*/longnet_d128_bf16_v2p'
for v in $VARIANTS; do
  tools=memcheck; case $v in *w) tools="memcheck racecheck";; esac  # racecheck: the writer's barrier protocol
  for tool in $tools; do
    DILATED_FA3_BWD_SCHEDULE=$v timeout 100 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_backward" --gtest_color=no --gtest_filter="$F" > "$O/san-$v-$tool.log" 2>&1
    echo "$v $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED  \]' "$O/san-$v-$tool.log" | tr '\n' ' ')"
  done
  echo "elapsed $(( $(date +%s) - t0 )) s"
done
echo "=== 5. peers in the same call: cuDNN / FA2 SDPA backward vs ours (default v2p) ==="
timeout 150 python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="--benchmark_min_time=0.3 --benchmark_filter=BM_Fa3Backward/kind:[01]/" > "$O/peers.log" 2>&1
echo "rc=$?"; grep -E "^case|bwd" "$O/peers.log" | tail -4
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 6. LongNet 1M x 16 x 128 backward per variant (stops at 430 s) ==="
for v in p $VARIANTS; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout 50 "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:2/' --benchmark_min_time=0.3 --benchmark_out="$O/bwd2_$v.json" > "$O/bwd2_$v.log" 2>&1
  echo "rc=$? $(grep -E '^BM_' "$O/bwd2_$v.log" | awk -v v=$v '{printf "%s kind%s %s ms %s | ", v, substr($1,21,1), $2, $6}')"
  [ $(( $(date +%s) - t0 )) -gt 430 ] && { echo "time budget: stop"; break; }
done
echo "total elapsed $(( $(date +%s) - t0 )) s"
