#!/usr/bin/env bash
# fa3bwd2 request 2 (one H100, <= 150 s): the lean head_dim 128 backward schedule rwl
# (new default) against rw (old default) and cuDNN / FA2 in the same call, float64 suites,
# compute-sanitizer, LongNet 1M, and an ncu profile of rwl with source counters.
# Everything goes to $1/run and is tarred into $1/result2.tgz at the end.
#   bash .deps/fa3bwd2-run/driver2.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); TOP=${1:-/tmp/fa3bwd2}; O=$TOP/run; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 138))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt 1 ] && l=1; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
summ() { echo "  $(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -6; }
speed() { grep -E '^BM_' "$1" | awk '{for(i=1;i<=NF;i++) if($i ~ /TFLOP/) t=$i; printf "| kind%s %s ms %s ", substr($1,21,1), $2, t}'; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
BF='--benchmark_filter=BM_Fa3Backward/kind:[01]/'

echo "=== 1. speed bf16 B1 H16 N16K d128, kind0 dense / kind1 causal: rw (old default), default (rwl), rw, rwl"
for v in rw default rw2 default2; do
  s=${v%2}; [ "$s" = default ] && unset DILATED_FA3_BWD_SCHEDULE || export DILATED_FA3_BWD_SCHEDULE=$s
  timeout $(lim 15) "$B/bench_fa3" "$BF" --benchmark_out="$O/bwd_$v.json" > "$O/bwd_$v.log" 2>&1
  echo "$v rc=$? $(speed "$O/bwd_$v.log") $(grep -oE 'bwd v2p|bwd v1|bwd v2' "$O/bwd_$v.log" | head -1)"
done
unset DILATED_FA3_BWD_SCHEDULE
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 2. peers (cuDNN / FA2 SDPA, same call) vs ours (default = rwl)"
timeout $(lim 35) python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="$BF" > "$O/peers.log" 2>&1
echo "rc=$?"; grep -E "bwd" "$O/peers.log" | tail -2
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 3. float64: test_fa3_backward V2Pipelined (default: rwl at d128, v2p at d64) + layout + choice"
timeout $(lim 30) "$B/test_fa3_backward" --gtest_color=no --gtest_filter='V2Pipelined/*:Fa3Backward2Layout.*:Fa3BackwardKernelChoice.*' > "$O/test_fa3_backward.log" 2>&1
echo "rc=$?"; summ "$O/test_fa3_backward.log"
echo "=== 4. float64: test_fa3_window d128 + masked (default rwl for equal windows)"
timeout $(lim 40) "$B/test_fa3_window" --gtest_color=no --gtest_filter='*d128*:Fa3WindowMasked.*' > "$O/test_fa3_window.log" 2>&1
echo "rc=$?"; summ "$O/test_fa3_window.log"
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 5. compute-sanitizer on small d128 cases (default rwl)"
F='V2Pipelined/*/dense_d128_bf16_v2p:V2Pipelined/*/unkept_rows_d128_causal_fp16_v2p:V2Pipelined/*/head_groups_d128_bf16_v2p'
for tool in racecheck memcheck; do
  timeout $(lim 30) compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_backward" --gtest_color=no --gtest_filter="$F" > "$O/san-$tool.log" 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED  \]' "$O/san-$tool.log" | tr '\n' ' ')"
done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 6. LongNet 1M x 16 x 128 backward: rw vs default (rwl)"
for v in rw default; do
  [ "$v" = default ] && unset DILATED_FA3_BWD_SCHEDULE || export DILATED_FA3_BWD_SCHEDULE=$v
  timeout $(lim 15) "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:2/' --benchmark_out="$O/longnet_$v.json" > "$O/longnet_$v.log" 2>&1
  echo "$v rc=$? $(grep -E '^BM_' "$O/longnet_$v.log" | awk '{print $2, $3}')"
done
unset DILATED_FA3_BWD_SCHEDULE
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 7. ncu rwl dense with source counters"
timeout $(lim 40) ncu --clock-control none -k regex:backward2_kernel --launch-count 1 \
  --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
  --section MemoryWorkloadAnalysis --section SourceCounters --import-source no -f -o "$O/ncu_rwl" \
  "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:0/' > "$O/ncu_rwl.log" 2>&1
echo "rc=$?"
if [ -f "$O/ncu_rwl.ncu-rep" ]; then
  timeout 15 ncu -i "$O/ncu_rwl.ncu-rep" --page details --print-details all > "$O/ncu_rwl_details.txt" 2>&1
  timeout 15 ncu -i "$O/ncu_rwl.ncu-rep" --page source --csv --print-source sass > "$O/ncu_rwl_sass.csv" 2>&1
  grep -E 'SM Frequency|Duration|Pipe Tensor Cycles Active|Issue Slots Busy|Warp Cycles Per Issued' "$O/ncu_rwl_details.txt" | head -6
fi
echo "total elapsed $(( $(date +%s) - T0 )) s"
tar czf "$TOP/result2.tgz" -C "$TOP" run && rm -rf "$O" && ls -la "$TOP"
