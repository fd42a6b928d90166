#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session), experiment: 176-key blocks for LongNet's r = 6 and 12 branches (2731 keys a
# row: 16 blocks of 176 pad to the same 2816 keys as 22 of 128) via DILATED_FA3_WIDE_MIN_KEYS=2560 (the fused
# chain's 2048-key rows keep 128). A. forward cases with the threshold at 100 (every merging branch on 176-key
# blocks) and 2560; B. LongNet 1M d128 default vs 2560, alternating, three rounds. Usage: run8.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run8}; mkdir -p $O
N=/tmp/s8new8; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
( export DILATED_FA3_WIDE_MIN_KEYS=100; timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter='*longnet*:*chain*:*nested*:*fused*:*w_mod_r*:*r16*:*partial*:*unkept*' > $O/fwd_w100.log 2>&1 ) &
( export DILATED_FA3_WIDE_MIN_KEYS=2560; timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter='*longnet*:*fused*' > $O/fwd_w2560.log 2>&1 ) &
wait
for f in fwd_w100 fwd_w2560; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) ' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | sed 's/, where.*//' | sort -u | head; done
echo "A t=$(el)"
for r in 1 2 3; do for v in default 2560; do
  if [ $v = 2560 ]; then export DILATED_FA3_WIDE_MIN_KEYS=2560; else unset DILATED_FA3_WIDE_MIN_KEYS; fi
  DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/' --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  grep -E '^BM_' $O/ln_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=${v}_$r '{print t, $0}' | cut -c1-110
done; done; unset DILATED_FA3_WIDE_MIN_KEYS
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run8.tar.gz -C $P $(basename $O) && rm -rf $O
