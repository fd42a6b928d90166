#!/usr/bin/env bash
# One-off driver of the 2026-11-27 H100 run of the portable kernels' 16-bit
# storage (issue 3): the forward/backward/AutoPlan suites of a Kokkos 4.6.1
# CUDA build (Serial + Cuda; half_t and bhalf_t are real types on both), and
# compute-sanitizer memcheck on the Cuda half/bf16 cases.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/half}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH OMP_NUM_THREADS=4 OMP_PROC_BIND=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
cat $O/gpu.txt
for t in test_forward test_backward test_auto_plan; do
  s=$(date +%s)
  timeout 100 stdbuf -oL $B/$t --gtest_color=no > $O/$t.log 2>&1; rc=$?
  echo "$t rc=$rc $(($(date +%s)-s))s $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$t.log | sed 's/, where.*//' | sort -u | head -8
  grep -B1 -A4 'Failure' $O/$t.log | head -40
  # Which type each suite index is (the Cuda 16-bit ones are what matter here).
  grep -E '^\[----------\] .* tests? from .*, where TypeParam' $O/$t.log | sed 's/.*from //' | sort -u
done
# memcheck on the Cuda half_t / bhalf_t suites (indices looked up by type name).
for t in test_forward test_backward; do
  F=$(grep -E 'where TypeParam = .*Kokkos::Cuda, Kokkos::Experimental' $O/$t.log | sed -E 's/.* from ([A-Za-z0-9]+\/[0-9]+), where.*/\1.*/' | sort -u | paste -sd:)
  echo "memcheck $t filter: $F"
  [ -z "$F" ] && continue
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/$t --gtest_color=no --gtest_filter="$F" > $O/memcheck-$t.log 2>&1
  echo "memcheck $t rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck-$t.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/memcheck-$t.log | tr '\n' ' ')"
done
