#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session): every cuda_fa3 test binary with the lazy softmax (v2, the committed kernels), concurrently; the
# forward also at 3 CTAs; compute-sanitizer racecheck on small forward cases at 2 CTAs. Usage: final6.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/final6}; mkdir -p $O
N=/tmp/s9new6; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_support test_fa3_numerics test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_auto_plan test_offload_fa3; do
  bg ${t#test_} 480 $N/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fwd_cta3 480 $N/test_fa3_forward; wait ) &
( export DILATED_FA3_MAX_CTAS=2; bg racecheck 400 compute-sanitizer --tool racecheck --error-exitcode 9 $N/test_fa3_forward --gtest_filter='*/fused_r124_d64_bf16:*/dense_d64_bf16:*/longnet_d128_bf16'; wait ) &
wait; echo "done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |SUMMARY' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
P=$(dirname $O); tar -czf $P/final6.tar.gz -C $P $(basename $O) && rm -rf $O
