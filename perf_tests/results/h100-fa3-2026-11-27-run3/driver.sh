#!/usr/bin/env bash
# One-off driver of the third 2026-11-27 H100 run (kept with the results).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/r3}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
for t in test_fa3_backward test_fa3_block_sparse test_fa3_forward test_fa3_numerics; do
  timeout 240 $B/$t --gtest_color=no > $O/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] .*/' $O/$t.log | sed 's/, where.*//' | sort -u | head -8
done
for tool in memcheck racecheck synccheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_fa3_backward --gtest_filter='V2Pipelined/*dense_d128_bf16*:V2Pipelined/*dense_d64_bf16*:V2Pipelined/*w_mod_r_d64_causal_fp16*' > $O/san-v2p-$tool.log 2>&1
  echo "$tool v2p rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san-v2p-$tool.log | tail -n 1)"
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_fa3_forward --gtest_filter='*block_sparse_random90_d128_bf16:*block_sparse_local_d128_bf16' > $O/san-bsfwd-$tool.log 2>&1
  echo "$tool block-sparse fwd rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san-bsfwd-$tool.log | tail -n 1)"
done
for k in v2 v2p v1; do
  DILATED_FA3_BWD=$k timeout 60 $B/bench_fa3 --benchmark_filter=BM_Fa3Backward --benchmark_min_time=0.3 --benchmark_out=$O/bwd_$k.json > $O/bwd_$k.log 2>&1
  grep -E '^BM_' $O/bwd_$k.log | awk '{print "'$k'", $1, $2, $3, $6, $NF}'
done
for g in persistent tile; do
  env $( [ $g = tile ] && echo DILATED_FA3_BLOCK_SPARSE_GRID=tile ) timeout 90 $B/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_min_time=0.3 --benchmark_out=$O/bs_$g.json > $O/bs_$g.log 2>&1
  grep -E '^BM_' $O/bs_$g.log | sed 's/min_time:1.000\/manual_time//' | awk '{print "'$g'", $1, $2, $3, $(NF-3), $(NF-2)}'
done
