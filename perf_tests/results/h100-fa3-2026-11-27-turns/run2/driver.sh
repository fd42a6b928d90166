#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4, EXPERIMENT (upper bound, not a safe kernel): how much of the
# forward's time is the running max? DILATED_FA3_LAZY_MAX=1 skips the row max (FMNMX per score, the quad
# shuffles, the correction's exp2) after each tile's first key block, keeping block 0's max as the
# stabilizer: right for these random inputs, overflow-prone in general.
# A. forward cases with the knob (random inputs: expected to pass) and without.
# B. LongNet 1M d128 base / lazy x3 alternating; d64, d256; dense/causal 16K d64/d128 x2.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run2}; mkdir -p $O
N=/tmp/s9new2; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
S='*/fused_r124_d128_bf16:*/fused_then_r6_d128_bf16:*/dense_d64_bf16:*/dense_d128_fp16:*/longnet_d128_bf16:*/dense_d256_bf16'
( export DILATED_FA3_LAZY_MAX=1; timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter="$S" > $O/lazy_tests.log 2>&1 ) &
timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter="$S" > $O/base_tests.log 2>&1 &
wait
for f in lazy_tests base_tests; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) ' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | sed 's/, where.*//' | sort -u | head; done
echo "A t=$(el)"
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-130; }
cfg() { if [ $1 = lazy ]; then export DILATED_FA3_LAZY_MAX=1; else unset DILATED_FA3_LAZY_MAX; fi; }
bench() { local name=$1 filter=$2; DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter="$filter" --benchmark_out=$O/$name.json --benchmark_out_format=json > $O/$name.log 2>&1; row $O/$name.log $name; }
for r in 1 2 3; do for v in base lazy; do cfg $v; bench ln_${v}_$r 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'; done; done
for v in base lazy; do cfg $v; bench ln64_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/'; bench ln256_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:256/'; done
for r in 1 2; do for v in base lazy; do cfg $v; bench dense_${v}_$r 'BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128)/'; done; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run2.tar.gz -C $P $(basename $O) && rm -rf $O
