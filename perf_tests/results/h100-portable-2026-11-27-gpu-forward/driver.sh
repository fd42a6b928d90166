#!/usr/bin/env bash
# One-off driver of the 2026-11-27 H100 run of the portable GPU forward (kept with the results).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/r4}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 OMP_PROC_BIND=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
for t in test_forward test_window test_numerics_nonfinite test_block_sparse; do
  timeout 200 $B/$t --gtest_color=no > $O/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$t.log | sed 's/, where.*//' | sort -u | head -6
  DILATED_PORTABLE_GPU_FORWARD=gpu256 timeout 120 $B/$t --gtest_color=no --gtest_filter='*/3.*' > $O/$t-gpu256.log 2>&1; echo "$t gpu256 rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t-gpu256.log | tr '\n' ' ')"
done
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_forward --gtest_filter='*/3.*' > $O/racecheck.log 2>&1
echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY' $O/racecheck.log | tail -n 1)"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_forward --gtest_filter='*/3.*' > $O/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1)"
F='BM_Attention/kind:2/seq:1048576/heads:16/dim:128/bwd:0'
for v in gpu gpu256 classic; do
  env $( [ $v != gpu ] && echo DILATED_PORTABLE_GPU_FORWARD=$v ) timeout 120 $B/bench_attention --benchmark_filter=$F --benchmark_min_time=0.01 --benchmark_out=$O/bench_$v.json --benchmark_out_format=json > $O/bench_$v.log 2>&1
  echo "$v: $(grep -E '^BM_' $O/bench_$v.log | tr -s ' ')"
done
