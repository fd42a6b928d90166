#!/usr/bin/env bash
# fa3bwd2 request 1 (one H100, <= 150 s): where the v2p-family backward (head_dim 128,
# default schedule rw) spends its time at B=1 H=16 N=16K bf16, and a first variant.
#   1. timing, same call: schedules p, rw (default), rwl (rw + lean softmax/addresses);
#      rw with parts switched off (DILATED_FA3_BWD_ABLATE, experiment build only)
#   2. ncu on rw dense (SOL, compute, warp state, scheduler, memory, source counters)
#   3. peers: cuDNN / FA2 backward (PyTorch SDPA) vs ours (rw) in the same call
#   4. float64: test_fa3_backward V2Pipelined d128 cases with rwl
#   5. ncu on cuDNN's backward kernels (launch stats, SOL, warp state, compute, memory)
#   6. ncu on rwl dense (no source counters); durations of delta / store kernels
#   bash .deps/fa3bwd2-run/driver1.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bwd2}; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 145))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
NCU_SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy"
BF='--benchmark_filter=BM_Fa3Backward/kind:[01]/'

echo "=== 1. speed bf16 B1 H16 N16K d128 dense(kind0) / causal(kind1)"
for v in p rw rwl; do
  DILATED_FA3_BWD_SCHEDULE=$v timeout $(lim 20) "$B/bench_fa3" "$BF" --benchmark_out="$O/bwd_$v.json" > "$O/bwd_$v.log" 2>&1
  echo "$v rc=$? $(grep -E '^BM_' "$O/bwd_$v.log" | awk '{for(i=1;i<=NF;i++) if($i ~ /TFLOP/) t=$i; printf "| %s %s ms %s ", substr($1,21,1), $2, t}')"
done
echo "ablations of rw (EXPERIMENT build only, results wrong): 1 = no dQ reduce-add, 2 = no Q/dO loads after the first use of a stage, 3 = both"
for a in 1 2 3; do
  DILATED_FA3_BWD_ABLATE=$a DILATED_FA3_BWD_SCHEDULE=rw timeout $(lim 20) "$B/bench_fa3" --benchmark_filter=BM_Fa3Backward/kind:0/ --benchmark_out="$O/bwd_rw_ablate$a.json" > "$O/bwd_rw_ablate$a.log" 2>&1
  echo "rw ablate=$a rc=$? $(grep -E '^BM_' "$O/bwd_rw_ablate$a.log" | awk '{for(i=1;i<=NF;i++) if($i ~ /TFLOP/) t=$i; printf "| %s %s ms %s ", substr($1,21,1), $2, t}')"
done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 2. ncu rw dense (main kernel, 1 launch)"
DILATED_FA3_BWD_SCHEDULE=rw timeout $(lim 45) ncu --clock-control none -k regex:backward2_kernel --launch-count 1 \
  $NCU_SECTIONS --section SourceCounters --import-source no -f -o "$O/ncu_rw" \
  "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:0/' > "$O/ncu_rw.log" 2>&1
echo "rc=$?"
if [ -f "$O/ncu_rw.ncu-rep" ]; then
  ncu -i "$O/ncu_rw.ncu-rep" --page details --print-details all > "$O/ncu_rw_details.txt" 2>&1 || ncu -i "$O/ncu_rw.ncu-rep" --page details > "$O/ncu_rw_details.txt" 2>&1
  ncu -i "$O/ncu_rw.ncu-rep" --page source --csv --print-source sass > "$O/ncu_rw_sass.csv" 2>&1
  ncu -i "$O/ncu_rw.ncu-rep" --page raw --csv > "$O/ncu_rw_raw.csv" 2>&1
  grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Executed Ipc Active|Shared Memory|No Eligible|Warp Cycles Per Issued|Registers Per|L2 Hit|One or More Eligible' "$O/ncu_rw_details.txt" | head -24
  ls -la "$O"/ncu_rw* | awk '{print $5, $9}'
fi
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 3. peers (cuDNN / FA2, same call) vs ours rw"
timeout $(lim 40) python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="$BF" > "$O/peers.log" 2>&1
echo "rc=$?"; grep -E "bwd" "$O/peers.log" | tail -3
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 4. float64: test_fa3_backward V2Pipelined d128 with rwl"
DILATED_FA3_BWD_SCHEDULE=rwl timeout $(lim 30) "$B/test_fa3_backward" --gtest_color=no --gtest_filter='V2Pipelined/*d128*:Fa3BackwardKernelChoice.*' > "$O/test_rwl.log" 2>&1
echo "rc=$? $(grep -E '^\[  (PASSED|FAILED) |tests ran' "$O/test_rwl.log" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$O/test_rwl.log" | head -5
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 5. ncu cuDNN backward (all kernels of one fwd+bwd)"
timeout $(lim 35) ncu --clock-control none --launch-count 30 $NCU_SECTIONS -f -o "$O/ncu_cudnn" \
  python3 "$B/cudnn_bwd_once.py" cudnn nowarm > "$O/ncu_cudnn.log" 2>&1
echo "rc=$?"
if [ -f "$O/ncu_cudnn.ncu-rep" ]; then
  ncu -i "$O/ncu_cudnn.ncu-rep" --page details --print-details all > "$O/ncu_cudnn_details.txt" 2>&1 || ncu -i "$O/ncu_cudnn.ncu-rep" --page details > "$O/ncu_cudnn_details.txt" 2>&1
  ncu -i "$O/ncu_cudnn.ncu-rep" --page raw --csv > "$O/ncu_cudnn_raw.csv" 2>&1
  grep -E '^  [a-zA-Z_].*\(|Duration' "$O/ncu_cudnn_details.txt" | grep -v '^    ' | head -30
fi
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 6. ncu rwl dense; delta/store kernel durations"
DILATED_FA3_BWD_SCHEDULE=rwl timeout $(lim 30) ncu --clock-control none -k regex:backward2_kernel --launch-count 1 \
  $NCU_SECTIONS -f -o "$O/ncu_rwl" "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:0/' > "$O/ncu_rwl.log" 2>&1
echo "rc=$?"
[ -f "$O/ncu_rwl.ncu-rep" ] && ncu -i "$O/ncu_rwl.ncu-rep" --page details --print-details all > "$O/ncu_rwl_details.txt" 2>&1 && \
  grep -E 'Duration|Issue Slots Busy|Shared Memory|No Eligible|Warp Cycles Per Issued' "$O/ncu_rwl_details.txt" | head -8
timeout $(lim 20) ncu --clock-control none -k regex:'delta_kernel|store_kernel' --launch-count 2 --section SpeedOfLight \
  "$B/bench_fa3" --benchmark_filter='BM_Fa3Backward/kind:0/' > "$O/ncu_prepost.log" 2>&1
echo "rc=$?"; grep -E 'delta_kernel|store_kernel|Duration' "$O/ncu_prepost.log" | head -6
echo "total elapsed $(( $(date +%s) - T0 )) s"
