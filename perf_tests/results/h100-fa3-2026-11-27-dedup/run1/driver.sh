#!/usr/bin/env bash
# fa3dedup request 1 (2026-11-27): LongNet chains in the cuda_fa3 forward
# (nested branches skip the keys an earlier chain branch counts with weight m;
# src/cuda_fa3/details/longnet_dedup.hpp). Correctness against the float64
# reference (outputs poisoned), memcheck, and LongNet 1M timings of the chain
# schedule (default) vs DILATED_FA3_LONGNET=dup (every branch's keys, as before)
# in the same binary.
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3dedup-out}; mkdir -p $O
T0=$(date +%s); END=$((T0 + 145))
left() { echo $((END - $(date +%s))); }
run() {  # seconds, command...: at most the time left before the global deadline
  local t=$1; shift; local l=$(left); [ $l -lt 4 ] && { echo "SKIPPED (deadline): $*"; return 124; }
  [ $t -gt $l ] && t=$l; timeout $t "$@"
}
B=/tmp/fa3dedup-bin; mkdir -p $B
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $H/bins.tar.xz $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ') $(grep -E 'tests ran' $3 | sed 's/.*(\(.*\)).*/\1/')"; grep -E '^\[  FAILED  \] .*/' $3 | sed 's/, where.*//' | sort -u | head -8; }
echo "== LongNet 1M x 16 bf16 forward: chains (default) vs dup, d128 and d64"
bench() {  # label, env...
  local l=$1; shift
  (export "$@"; run 30 stdbuf -oL $B/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' --benchmark_min_time=0.3 \
    --benchmark_out=$O/ln_$l.json > $O/ln_$l.log 2>&1)
  echo "rc=$? $l"; grep -E '^BM_' $O/ln_$l.log | awk -v l=$l '{print l, $1, $2, $3, $(NF-2), $(NF-1)}' | sed 's/batch:1\/seq:1048576\/heads:16\///; s/\/min_time:0.300\/manual_time//'
}
bench dup DILATED_FA3_LONGNET=dup
bench chain DILATED_FA3_LONGNET=chain
echo "== correctness (float64 reference, poisoned outputs)"
run 70 $B/test_fa3_forward --gtest_color=no > $O/test_fa3_forward.log 2>&1; summ forward $? $O/test_fa3_forward.log
(export DILATED_FA3_MAX_CTAS=3; run 25 $B/test_fa3_forward --gtest_color=no --gtest_filter='*longnet*:*chain*:*nested*' > $O/test_fa3_forward_ctas3.log 2>&1); summ forward_ctas3 $? $O/test_fa3_forward_ctas3.log
run 30 $B/test_fa3_backward --gtest_color=no --gtest_filter='*longnet*' > $O/test_fa3_backward.log 2>&1; summ backward_longnet $? $O/test_fa3_backward.log
echo "== compute-sanitizer memcheck (small chains)"
run 30 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*chain_r124_partial_d64_bf16:*chain_r124_partial_d256_fp16:*longnet_d128_bf16' > $O/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/memcheck.log) ok"
run 25 $B/test_fa3_window --gtest_color=no --gtest_filter='*longnet*' > $O/test_fa3_window.log 2>&1; summ window_longnet $? $O/test_fa3_window.log
echo "wall $(( $(date +%s) - T0 )) s"
cd $O && tar -czf $O/all.tar.gz --remove-files gpu.txt *.log *.json 2>/dev/null; ls $O
