#!/usr/bin/env bash
# One-off driver of the second 2026-11-27 H100 run (kept with the results).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/r2}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
for t in test_fa3_backward test_fa3_block_sparse test_fa3_forward; do
  timeout 200 $B/$t --gtest_color=no > $O/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] .*/' $O/$t.log | sed 's/, where.*//' | head -8
done
F='*dense_d64_bf16_v2:*dense_d64_causal_fp16_v2:*w_mod_r_d64_bf16_v2:*partial_segments_d64_bf16_v2'
for tool in memcheck racecheck synccheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_fa3_backward --gtest_filter="$F" > $O/san-bwd2-d64-$tool.log 2>&1
  echo "$tool bwd v2 d64 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san-bwd2-d64-$tool.log | tail -n 1)"
done
