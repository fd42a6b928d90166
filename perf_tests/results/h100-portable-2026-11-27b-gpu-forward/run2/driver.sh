#!/usr/bin/env bash
# gpufwd request: the portable GPU forward variants (issue 3) on the H100.
# $1: output folder. Every step under `timeout`; skips late steps past ~7.5 min.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/gpufwd-out}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8 OMP_PROC_BIND=false
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
late() { [ $(el) -gt $1 ]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
echo "gpu: $(sed -n 2p $O/gpu.txt)"
# 1. fp32 FMA peak (plain CUDA, independent FMA chains)
timeout 30 $B/bench_fp32_peak 65536 5 > $O/fp32_peak.json 2>&1; echo "fp32 peak rc=$? $(cat $O/fp32_peak.json) t=$(el)"
VARIANTS=${VARIANTS:-"pipe128 gpu128 gpu256 pipe256"}
# 2. suites: Cuda float cases (the only ones the variants change) for every variant
for t in test_forward test_window test_numerics_nonfinite test_block_sparse; do
  for v in $VARIANTS; do
    DILATED_PORTABLE_GPU_FORWARD=$v timeout 60 $B/$t --gtest_color=no --gtest_filter='*/3.*' > $O/$t-$v.log 2>&1
    echo "$t $v rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t-$v.log | tr '\n' ' ')"
    grep -E '^\[  FAILED  \] ' $O/$t-$v.log | sed 's/, where.*//' | sort -u | head -3
  done
done
echo "suites done t=$(el)"
# 3. LongNet d128 fp32 forward, 1M x 16 heads and 256K x 16 heads, every variant
F1='BM_Attention/kind:2/seq:1048576/heads:16/dim:128/bwd:0'
F2='BM_Attention/kind:2/seq:262144/heads:16/dim:128/bwd:0'
F3='BM_Attention/kind:2/seq:65536/heads:4/dim:128/bwd:0'
for v in $VARIANTS; do
  late 330 && { echo "skip bench $v (late)"; continue; }
  DILATED_PORTABLE_GPU_FORWARD=$v timeout 60 stdbuf -oL $B/bench_attention --benchmark_filter="$F1|$F2|$F3" --benchmark_min_time=0.01 --benchmark_out=$O/bench_$v.json --benchmark_out_format=json > $O/bench_$v.log 2>&1
  echo "bench $v rc=$?"; grep -E '^BM_' $O/bench_$v.log | sed -E 's/ +/ /g; s/fwd LongNet.*//' | cut -c1-150
done
late 360 || { DILATED_PORTABLE_GPU_FORWARD=classic timeout 25 stdbuf -oL $B/bench_attention --benchmark_filter="$F2" --benchmark_min_time=0.01 > $O/bench_classic.log 2>&1; echo "bench classic rc=$? $(grep -E '^BM_' $O/bench_classic.log | sed -E 's/ +/ /g; s/fwd LongNet.*//')"; }
echo "bench done t=$(el)"
# 4. compute-sanitizer on a variant's Cuda float cases of test_forward ($1: variant:tool)
san() {
  local SAN=${1%%:*} tool=${1##*:}
  DILATED_PORTABLE_GPU_FORWARD=$SAN timeout 90 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_forward --gtest_filter='*/3.*' > $O/$tool-$SAN.log 2>&1
  echo "$tool $SAN rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|SYNCCHECK SUMMARY' $O/$tool-$SAN.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$SAN.log | tr '\n' ' ') t=$(el)"
}
late 400 || san pipe128:racecheck
late 400 || san pipe128:memcheck
late 400 || san pipe128:synccheck
# 5. PyTorch gather-SDPA-scatter LongNet reference, 1M x 16 x 128: fp32 (mem-efficient SDPA), bf16 (flash)
late 420 || { timeout 90 python3 $B/cpu_peers.py --gpu-longnet-fp32 > $O/torch_longnet_fp32.json 2>$O/torch_fp32.err; echo "torch fp32 rc=$? $(tr -d '\n ' < $O/torch_longnet_fp32.json) t=$(el)"; tail -2 $O/torch_fp32.err; }
late 450 || { timeout 40 python3 $B/cpu_peers.py --gpu-longnet > $O/torch_longnet_bf16.json 2>$O/torch_bf16.err; echo "torch bf16 rc=$? $(tr -d '\n ' < $O/torch_longnet_bf16.json) t=$(el)"; }
late 440 || san pipe256:racecheck
late 440 || san pipe256:memcheck
# 6. Nsight Compute on one launch (branch w=2048) of the old and new kernel at 64K x 4 heads
if command -v ncu > /dev/null; then
  NCU="ncu --kernel-name-base demangled -k regex:ForwardBranchKernelGpu --launch-count 1"
  BA="$B/bench_attention --benchmark_filter=BM_Attention/kind:2/seq:65536/heads:4/dim:128/bwd:0 --benchmark_min_time=0.01"
  for v in gpu128 pipe128; do
    late 470 && break
    DILATED_PORTABLE_GPU_FORWARD=$v timeout 60 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section ComputeWorkloadAnalysis --section InstructionStats $BA > $O/ncu_$v.txt 2>&1
    echo "ncu $v rc=$?"; grep -E 'Duration|Issue Slots Busy|Warp Cycles Per Issued|Executed Instructions  ' $O/ncu_$v.txt | sed -E 's/ +/ /g' | head -6
    late 480 && break
    DILATED_PORTABLE_GPU_FORWARD=$v timeout 60 $NCU --metrics smsp__sass_thread_inst_executed_op_ffma_pred_on.sum,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio $BA > $O/ncu_metrics_$v.txt 2>&1
    echo "ncu metrics $v rc=$?"; grep -E 'ffma_pred_on.sum|smsp__inst_executed.sum' $O/ncu_metrics_$v.txt | sed -E 's/ +/ /g'
    grep -E 'issue_stalled' $O/ncu_metrics_$v.txt | sed -E 's/ +/ /g; s/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | sort -k3 -g -r | head -7 | tr '\n' ';'; echo
  done
else
  echo "no ncu"
fi
echo "total t=$(el)"
