#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4, diagnosis: the safe lazy softmax (v2) gains about half of the
# unsafe upper bound (run2). Which part costs? Temporary knob DILATED_FA3_LAZY_DIAG (not kept): =1 releases
# K(kb) before the softmax (as before; unsafe with a recompute), =2 accepts every block without the warp vote
# (unsafe). LongNet 1M d128 and dense 16K d128/d64: exact / lazy / diag1 / diag2, two rounds alternating.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag5}; mkdir -p $O
N=/tmp/s9new5; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
cfg() { unset DILATED_FA3_SOFTMAX DILATED_FA3_LAZY_DIAG
  case $1 in exact) export DILATED_FA3_SOFTMAX=exact;; d1) export DILATED_FA3_LAZY_DIAG=1;; d2) export DILATED_FA3_LAZY_DIAG=2;; esac; }
bench() { local name=$1 filter=$2; DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter="$filter" --benchmark_out=$O/$name.json --benchmark_out_format=json > $O/$name.log 2>&1; row $O/$name.log $name; }
for r in 1 2; do for v in exact lazy d1 d2; do cfg $v
  bench ln_${v}_$r 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
  bench dense_${v}_$r 'BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:(64|128)/'
done; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag5.tar.gz -C $P $(basename $O) && rm -rf $O
