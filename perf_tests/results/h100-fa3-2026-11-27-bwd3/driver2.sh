#!/usr/bin/env bash
# fa3bwd request 2 (one H100, < 180 s): rw (the new head_dim 128 default of
# the pipelined backward family) and the one new variant rew (rw with the next
# block's S^T queued ahead of dK, dK from dS^T in shared memory) against p
# (the old default v2p) and cuDNN / FA2 (PyTorch SDPA) in the same call;
# float64 suites and compute-sanitizer for rew only (rw passed them in request 1).
#   bash .deps/fa3bwd-run/driver2.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bwd2}; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt"
cat "$O/machine.txt"
summ() { echo "  $(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -6; }
t0=$(date +%s)
echo "=== 1. backward speed, bf16 B1 H16 N16K d128 dense / causal: p (old default), rw (default), rew ==="
for v in p rw rew; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout 40 "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:[01]/' --benchmark_min_time=0.3 --benchmark_out="$O/bwd_$v.json" > "$O/bwd_$v.log" 2>&1
  echo "rc=$? $(grep -E '^BM_' "$O/bwd_$v.log" | awk -v v=$v '{printf "%s kind%s %s ms %s | ", v, substr($1,21,1), $2, $(NF-4)}')"
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 2. float64: test_fa3_backward V2Pipelined (default rw; rew), test_fa3_window d128 (rew) ==="
timeout 40 "$B/test_fa3_backward" --gtest_color=no --gtest_filter='V2Pipelined/*:Fa3Backward2Layout.*:Fa3BackwardKernelChoice.*' > "$O/test_fa3_backward.log" 2>&1; echo "default rc=$?"; summ "$O/test_fa3_backward.log"
DILATED_FA3_BWD_SCHEDULE=rew timeout 40 "$B/test_fa3_backward" --gtest_color=no --gtest_filter='V2Pipelined/*' > "$O/test_fa3_backward_rew.log" 2>&1; echo "rew rc=$?"; summ "$O/test_fa3_backward_rew.log"
DILATED_FA3_BWD_SCHEDULE=rew timeout 70 "$B/test_fa3_window" --gtest_color=no --gtest_filter='*d128*:Fa3WindowMasked.*' > "$O/test_fa3_window_rew.log" 2>&1; echo "window rew rc=$?"; summ "$O/test_fa3_window_rew.log"
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 3. compute-sanitizer (rew), small d128 cases ==="
F='V2Pipelined/*/dense_d128_bf16_v2p:V2Pipelined/*/unkept_rows_d128_causal_fp16_v2p:V2Pipelined/*/longnet_d128_bf16_v2p'
for tool in memcheck racecheck; do
  DILATED_FA3_BWD_SCHEDULE=rew timeout 40 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_backward" --gtest_color=no --gtest_filter="$F" > "$O/san-rew-$tool.log" 2>&1
  echo "rew $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED  \]' "$O/san-rew-$tool.log" | tr '\n' ' ')"
done
echo "elapsed $(( $(date +%s) - t0 )) s"
echo "=== 4. peers in the same call: cuDNN / FA2 SDPA backward vs ours (default rw) ==="
timeout 70 python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="--benchmark_min_time=0.3 --benchmark_filter=BM_Fa3Backward/kind:[01]/" > "$O/peers.log" 2>&1
echo "rc=$?"; grep -E "^case|bwd" "$O/peers.log" | tail -3
echo "total elapsed $(( $(date +%s) - t0 )) s"
