#!/usr/bin/env bash
# Lead, 2026-11-27: cuda_fa3 with the NaN-row fix in softmax.cuh finish()
# (HEAD e4e3a50 + that patch): the fa3 suites vs float64, initcheck on the NaN
# case, and forward speed of HEAD's bench_fa3 vs the patched one in the same call.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/nanfix}; mkdir -p $O
D=/tmp/leadbin2; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D && cp $B/*.so* $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $O/gpu.txt; date -u >> $O/gpu.txt; cat $O/gpu.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in fa3_window_numerics fa3_forward fa3_window fa3_block_sparse fa3_backward fa3_numerics; do bg $t 110 $D/test_$t; done
wait; echo "tests done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED) ' $O/$n.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$n.log | sed 's/, where.*//' | sort -u | head -6; done
grep '^\[ bound' $O/fa3_window_numerics.log | grep -i nan | cut -c1-200
timeout 30 compute-sanitizer --tool initcheck --error-exitcode 9 $D/test_fa3_window_numerics --gtest_color=no --gtest_filter='*NanInAKeyRow*' > $O/initcheck-nan.log 2>&1
echo "initcheck nan rc=$? $(grep 'ERROR SUMMARY' $O/initcheck-nan.log | tail -1) $(grep -E '^\[  (PASSED|FAILED) ' $O/initcheck-nan.log | tr '\n' ' ')"
F='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/'
for b in bench_fa3_head bench_fa3 bench_fa3_head bench_fa3; do n=$b; [ -f $O/$b.json ] && n=${b}_2
  timeout 25 $D/$b --benchmark_filter="$F" --benchmark_out=$O/$n.json --benchmark_out_format=json > $O/$n.log 2>&1
  echo "$n: $(grep -E '^BM_' $O/$n.log | sed -E 's/.*kind:([01]).*TFLOP\/s=([0-9.]+).*/kind\1 \2/' | tr '\n' ' ')"; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/nanfix.tar.gz -C $P $(basename $O) && rm -rf $O
