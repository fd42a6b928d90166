#!/usr/bin/env bash
# One-off driver of the 2026-11-27 H100 run (kept with the results).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/r}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
for t in test_fa3_support test_fa3_forward test_fa3_block_sparse test_fa3_numerics; do
  timeout 200 $B/$t --gtest_color=no > $O/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] .*/' $O/$t.log | head -5
done
timeout 150 $B/test_fa3_backward --gtest_color=no --gtest_filter='*_v2' > $O/test_fa3_backward_v2.log 2>&1
echo "bwd v2 rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/test_fa3_backward_v2.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] .*/|Failure|error' $O/test_fa3_backward_v2.log | head -12
timeout 150 $B/test_fa3_backward --gtest_color=no --gtest_filter='*_v1' > $O/test_fa3_backward_v1.log 2>&1
echo "bwd v1 rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/test_fa3_backward_v1.log | tr '\n' ' ')"
for tool in memcheck racecheck synccheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_fa3_backward --gtest_filter='*dense_d128_bf16_v2:*dense_d64_bf16_v2' > $O/san-bwd2-$tool.log 2>&1
  echo "$tool bwd v2 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san-bwd2-$tool.log | tail -n 1)"
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_fa3_block_sparse --gtest_filter='*local_d128_bf16*' > $O/san-bs-$tool.log 2>&1
  echo "$tool block-sparse rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san-bs-$tool.log | tail -n 1)"
done
cd /work 2>/dev/null || true
