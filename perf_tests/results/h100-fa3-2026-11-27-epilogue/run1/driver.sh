#!/usr/bin/env bash
# fa3epi request 1 (one H100, <= 150 s): the cuda_fa3 forward's per-tile
# fixed cost (issue 4). One build (h/fa3epi); DILATED_FA3_EPILOGUE=old runs the
# epilogue as on main (no merge prefetch, warpgroups end each tile in step),
# the default runs both changes (merge rows prefetched by cp.async; early turn).
#   1. float64 tests (merging, dilated, block-sparse, dense) on the new default
#   2. same-call timing old/new: block-sparse 90% 16K, LongNet 1M d128, dense d128 16K
#   3. ncu: block-sparse 16K kernel old/new; LongNet branches 0 (writes) and 1 (merges), old/new
#   4. per-branch durations of the LongNet forward, old/new
#   5. test_fa3_window / _numerics subsets
#   bash .deps/fa3epi-run/driver1.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3epi-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 145))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
B=/tmp/fa3epi-bin; mkdir -p $B
tar -xJf "$H/bins.tar.xz" -C $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $3 | sed 's/, where.*//' | sort -u | head -8; }
run_bench() {  # label, filter, env...
  local l=$1 f=$2; shift 2
  if [ $(left) -lt 10 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env "$@" timeout $(lim 25) $B/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_$l.json > $O/b_$l.log 2>&1
  grep -E '^BM_' $O/b_$l.log | sed -E 's/\/min_time:[0-9.]+\/manual_time//; s/BM_Fa3//' | awk -v l=$l '{o=l" "$1" "$2" "$3; for(i=4;i<=NF;i++) if ($i ~ /^(dense_ms|vs_dense_x_density|TFLOP)/ || $i ~ /ERROR/) o=o" "$i; print o}'
}
NCU_SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy"
prof() {  # label, seconds, skip, count, source(0/1), filter, env...
  local l=$1 s=$2 sk=$3 c=$4 src=$5 f=$6; shift 6
  if [ $(left) -lt 15 ]; then echo "ncu $l SKIPPED (deadline)"; return; fi
  local extra=""; [ "$src" = 1 ] && extra="--section SourceCounters --import-source no"
  env "$@" timeout $(lim $s) ncu --clock-control none -k regex:forward_kernel --launch-skip $sk --launch-count $c \
    $NCU_SECTIONS $extra -f -o "$O/ncu_$l" $B/bench_fa3 --benchmark_filter="$f" > "$O/ncu_$l.log" 2>&1
  echo "ncu $l rc=$?"
  if [ -f "$O/ncu_$l.ncu-rep" ]; then
    ncu -i "$O/ncu_$l.ncu-rep" --page details --print-details all > "$O/ncu_${l}_details.txt" 2>&1
    [ "$src" = 1 ] && ncu -i "$O/ncu_$l.ncu-rep" --page source --csv --print-source sass > "$O/ncu_${l}_sass.csv" 2>&1 && gzip -f "$O/ncu_${l}_sass.csv"
    ncu -i "$O/ncu_$l.ncu-rep" --page raw --csv > "$O/ncu_${l}_raw.csv" 2>&1
    grep -E '^  [a-z].*forward_kernel|  Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|DRAM Throughput|L2 Hit Rate  ' "$O/ncu_${l}_details.txt" | sed -E 's/dilated::cuda_fa3::details:://g; s/\(dilated.*//' | head -20
  fi
}
FBS='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
FLN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
FD='BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/'

echo "=== 1. float64 tests, new default (merging, dilated, block-sparse, dense)"
timeout $(lim 30) $B/test_fa3_forward --gtest_color=no --gtest_filter='-*wide_blocks*:*many_tiles_d128_fp16:*many_tiles_d128_causal_fp16' > $O/test_fa3_forward.log 2>&1; summ test_fa3_forward $? $O/test_fa3_forward.log
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 2. timing, same call (old = DILATED_FA3_EPILOGUE=old)"
run_bench bs16_old "$FBS" DILATED_FA3_EPILOGUE=old
run_bench bs16_new "$FBS"
run_bench ln_old "$FLN" DILATED_FA3_EPILOGUE=old
run_bench ln_new "$FLN"
run_bench d128_old "$FD" DILATED_FA3_EPILOGUE=old
run_bench d128_new "$FD"
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 3. ncu (block-sparse 16K kernel; LongNet branch 0 + 1 / branch 1)"
prof bs_old 25 1 1 1 "$FBS" DILATED_FA3_EPILOGUE=old
prof ln_old 30 0 2 1 "$FLN" DILATED_FA3_EPILOGUE=old
prof bs_new 25 1 1 1 "$FBS"
prof ln_new 25 1 1 0 "$FLN"
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 4. LongNet 1M d128 per-branch kernel durations (us), old / new / noturn / noprefetch"
for v in old new noturn noprefetch; do
  if [ $(left) -lt 12 ]; then echo "$v SKIPPED (deadline)"; continue; fi
  DILATED_FA3_EPILOGUE=$v timeout $(lim 15) ncu --clock-control none -k regex:forward_kernel --launch-count 5 --metrics gpu__time_duration.sum \
    $B/bench_fa3 --benchmark_filter="$FLN" > $O/dur_$v.log 2>&1
  echo "$v rc=$? $(grep -E 'gpu__time_duration' $O/dur_$v.log | awk '{printf "%s ", $NF}')"
done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== 5. window tests (merging / dilated / 3-warpgroup subsets)"
timeout $(lim 25) $B/test_fa3_window --gtest_color=no --gtest_filter='*longnet_d128_bf16:*longnet_d128_causal_fp16:*w_mod_r_d64_bf16:*r16_small_windows_d64_causal_bf16:*head_groups_d128_bf16:*aligned_mixed_d128_causal_bf16:*dropout_longnet_d128_causal_bf16:*longnet_d256_bf16:*dense_d64_causal_fp16:Fa3WindowMasked.*' > $O/test_fa3_window.log 2>&1; summ test_fa3_window $? $O/test_fa3_window.log
timeout $(lim 20) $B/test_fa3_window_numerics --gtest_color=no --gtest_filter='*NanInAKeyRow*:*FullyMaskedRowsStayZero*:*InputsNear65504/fp16:*TinyAndLargeScales/bf16' > $O/test_fa3_window_numerics.log 2>&1; summ test_fa3_window_numerics $? $O/test_fa3_window_numerics.log
echo "total elapsed $(( $(date +%s) - T0 )) s"
P=$(dirname $O); tar -czf $P/fa3epi1.tar.gz -C $P $(basename $O) && echo "packed $P/fa3epi1.tar.gz"
