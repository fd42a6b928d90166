#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): the merge's fast exp/log weights and hoisted cp.async prefetch (427f72e)
# A. forward/window/window-numerics/backward/block-sparse/offload suites (new build), forward at 3 CTAs;
#    memcheck and racecheck on merging cases.
# B. LongNet 1M d128/d64: base (c1942b9) vs new, alternating, two rounds. Usage: run8.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run8}; mkdir -p $O
M=/tmp/s7base8; N=/tmp/s7new8; mkdir -p $M $N
tar -xJf $B/base.tar.xz -C $M && tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $M/ && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader; compute-sanitizer --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_offload_fa3; do
  bg ${t#test_} 200 $N/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fwd_cta3 200 $N/test_fa3_forward --gtest_filter='*longnet*:*chain*:*w_mod_r*:*r16*:*unkept*:*head_groups*:*partial*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $N/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san memcheck merge 150 test_fa3_forward '*/longnet_d128_bf16:*/w_mod_r_d64_fp16:*chain*d128*:*/unkept_rows_d128_bf16'
san racecheck merge 150 test_fa3_forward '*/longnet_d128_bf16:*chain_r124_partial_d64_bf16'
san memcheck window 150 test_fa3_window '*longnet_d128_bf16*'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
echo "=== B. LongNet: base (c1942b9) vs new (427f72e), alternating"
for r in 1 2; do for v in base new; do D=$([ $v = base ] && echo $M || echo $N)
  LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64 DILATED_BENCH_MIN_TIME=0.5 timeout 60 $D/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  grep -E '^BM_' $O/ln_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:0.500\/manual_time//' | awk -v t=${v}_$r '{print t, $0}' | cut -c1-120
done; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run8.tar.gz -C $P $(basename $O) && rm -rf $O
