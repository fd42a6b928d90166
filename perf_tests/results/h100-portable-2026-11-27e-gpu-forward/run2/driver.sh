#!/usr/bin/env bash
# gpufwd4 request 2: the portable GPU forward's lean-staging variant pipe256l
# (forward_kernel_gpu_pipelined.hpp, LEAN = true) vs pipe256 (the previous default).
# Run as `bash .deps/gpufwd4-run/go2.sh $OUT/x`. Binaries (Kokkos 4.6.01 CUDA build,
# nvcc_wrapper, CUDA 13.0) in bins.tar.xz next to bench_fp32_peak, libcudart.so.13,
# libbenchmark.so.1debian. Steps: fp32 rate; Cuda float suites (pipe256l; test_forward
# and test_numerics_nonfinite also pipe256); LongNet d128 fp32 benchmarks alternating
# pipe256 / pipe256l twice; racecheck + memcheck of pipe256l on test_forward's float64
# comparison; an Nsight Compute look at pipe256l. Every step has a timeout and is skipped
# past its mark; the global budget is ~140 s. Everything ends up in ONE file, $1/gpufwd4-2.tgz.
B=$(cd "$(dirname "$0")" && pwd); X=${1:-/tmp/gpufwd4-out}; mkdir -p $X; O=$X/w; mkdir -p $O
[ -f $B/bins.tar.xz ] && { tar xJf $B/bins.tar.xz -C $B || echo "untar failed"; }
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
late() { [ $(el) -gt $1 ]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
echo "gpu: $(sed -n 2p $O/gpu.txt)"
timeout 30 $B/bench_fp32_peak 65536 5 > $O/fp32_peak.json 2>&1; echo "fp32 peak rc=$? $(tr -d '\n' < $O/fp32_peak.json | grep -o '"fp32_fma_tflops": [0-9.]*') t=$(el)"
# The Cuda float suite of a typed test binary: its index from the listing.
cfilter() {
  local s=$($1 --gtest_list_tests | grep -E 'TypeParam = .*Cuda, float>' | head -1 | cut -d' ' -f1)
  [ -n "$s" ] && echo "${s}*" || echo "*/3.*"
}
suite() {  # $1 test binary, $2 variant
  local F=$(cfilter $B/$1); echo "$1 filter=$F" >> $O/filters.txt
  DILATED_PORTABLE_GPU_FORWARD=$2 timeout 40 $B/$1 --gtest_color=no --gtest_filter="$F" > $O/$1-$2.log 2>&1
  echo "$1 [$F] $2 rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$1-$2.log | tr '\n' ' ') t=$(el)"
  grep -E '^\[  FAILED  \] |Failure' $O/$1-$2.log | sed 's/, where.*//' | sort -u | head -4
}
for t in test_forward test_numerics_nonfinite test_window test_block_sparse; do suite $t pipe256l; done
late 60 || suite test_forward pipe256
late 60 || suite test_numerics_nonfinite pipe256
echo "suites done t=$(el)"
F1='BM_Attention/kind:2/seq:1048576/heads:16/dim:128/bwd:0'
F2='BM_Attention/kind:2/seq:262144/heads:16/dim:128/bwd:0'
F3='BM_Attention/kind:2/seq:65536/heads:4/dim:128/bwd:0'
for v in pipe256 pipe256l pipe256 pipe256l; do
  late 105 && { echo "skip bench $v (late)"; continue; }
  n=$v; [ -f $O/bench_$v.json ] && n=${v}_again
  DILATED_PORTABLE_GPU_FORWARD=$v timeout 25 stdbuf -oL $B/bench_attention --benchmark_filter="$F1|$F2|$F3" --benchmark_min_time=0.01 --benchmark_out=$O/bench_$n.json --benchmark_out_format=json > $O/bench_$n.log 2>&1
  echo "bench $n rc=$? t=$(el)"; grep -E '^BM_' $O/bench_$n.log | sed -E 's/ +/ /g; s/fwd LongNet.*//; s/tokens.*//; s/BM_Attention.kind:2.//; s/.dim:128.bwd:0.real_time//' | cut -c1-90
  grep -iE 'error|what\(\)|terminate' $O/bench_$n.log | head -3
done
echo "bench done t=$(el)"
FR="$(cfilter $B/test_forward | sed 's/\*$//')MatchesFloat64Reference"
san() {  # $1 tool
  late $2 && { echo "skip $1 (late)"; return; }
  DILATED_PORTABLE_GPU_FORWARD=pipe256l timeout 40 compute-sanitizer --tool $1 --error-exitcode 9 $B/test_forward --gtest_color=no --gtest_filter="$FR" > $O/$1-pipe256l.log 2>&1
  echo "$1 pipe256l [$FR] rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $O/$1-pipe256l.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$1-pipe256l.log | tr '\n' ' ') t=$(el)"
}
san racecheck 110
san memcheck 120
# Nsight Compute: one launch of the lean kernel, branch w = 2048 of LongNet 64K x 4 heads.
if command -v ncu > /dev/null && ! late 125; then
  DILATED_PORTABLE_GPU_FORWARD=pipe256l timeout 25 ncu --clock-control none --kernel-name-base demangled -k regex:ForwardBranchKernelGpuPipelined --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy --section InstructionStats --section ComputeWorkloadAnalysis \
    --metrics smsp__sass_thread_inst_executed_op_ffma_pred_on.sum,smsp__inst_executed.sum \
    $B/bench_attention --benchmark_filter="$F3" --benchmark_min_time=0.01 > $O/ncu_pipe256l.txt 2>&1
  echo "ncu pipe256l rc=$? t=$(el)"
  grep -E 'Duration|Issue Slots Busy|Warp Cycles Per Issued|Executed Instructions  |Registers Per|Achieved Active Warps|inst_executed.sum|ffma_pred_on.sum' $O/ncu_pipe256l.txt | sed -E 's/ +/ /g' | head -10
fi
tar czf $X/gpufwd4-2.tgz -C $X w && rm -rf $O
echo "total t=$(el)"
