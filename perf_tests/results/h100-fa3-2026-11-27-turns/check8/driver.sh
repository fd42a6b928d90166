#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4: (A) can the new numerics test fail? test_fa3_numerics built with two
# deliberate breakages of the lazy softmax's rare paths (not kept): mutA skips the recompute after an overflow,
# mutB drops settle_lazy's correction of O and the old row sum. Both must FAIL. (B) the commit's bench_fa3
# against diag5's build (v2 + a runtime knob, set to 0 here: the same logic, other code layout), LongNet 1M d128
# and dense 16K d128 alternating, three rounds: was diag5's 47.5 ms the machine or the layout?
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/check8}; mkdir -p $O
N=/tmp/s9new8; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && tar -xJf $B/check8.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
for m in mutA mutB; do timeout 200 $N/test_fa3_numerics_$m --gtest_color=no > $O/numerics_$m.log 2>&1 & done; wait
for m in mutA mutB; do echo "$m: $(grep -E '^\[  (PASSED|FAILED) ' $O/numerics_$m.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/numerics_$m.log | head -5; grep -E 'jump|ramp' $O/numerics_$m.log | head -6; done
echo "A t=$(el)"
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
for r in 1 2 3; do for v in commit diag; do bin=$N/bench_fa3; [ $v = diag ] && bin=$N/bench_fa3_diag
  DILATED_BENCH_MIN_TIME=1 timeout 90 $bin --benchmark_filter='BM_Fa3Forward/kind:(2/batch:1/seq:1048576|0/batch:1/seq:16384)/heads:16/dim:128/' --benchmark_out=$O/${v}_$r.json --benchmark_out_format=json > $O/${v}_$r.log 2>&1
  row $O/${v}_$r.log ${v}_$r; done; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/check8.tar.gz -C $P $(basename $O) && rm -rf $O
