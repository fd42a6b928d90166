#!/usr/bin/env bash
# gpufwd4 request 1: Nsight Compute profile of the portable GPU forward's default
# variant pipe256 (ForwardBranchKernelGpuPipelined<128, 256, 2>) on a LongNet launch,
# plus the baseline LongNet d128 fp32 timing and the fp32 FMA rate in the same call.
# Run as `bash .deps/gpufwd4-run/go1.sh $OUT/x`. Binaries: bench_attention.base
# (Kokkos 4.6.01 CUDA build of HEAD e4e3a50), bench_fp32_peak, libcudart.so.13,
# libbenchmark.so.1debian. Global deadline: every step is skipped past 130 s.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/gpufwd4-out}; mkdir -p $O
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
late() { [ $(el) -gt $1 ]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $O/gpu.txt; date -u >> $O/gpu.txt
echo "gpu: $(sed -n 2p $O/gpu.txt)"
timeout 30 $B/bench_fp32_peak 65536 5 > $O/fp32_peak.json 2>&1; echo "fp32 peak rc=$? $(tr -d '\n' < $O/fp32_peak.json | cut -c1-200) t=$(el)"
BA=$B/bench_attention.base
F1='BM_Attention/kind:2/seq:1048576/heads:16/dim:128/bwd:0'
F3='BM_Attention/kind:2/seq:65536/heads:4/dim:128/bwd:0'
bench() {  # $1 name, $2 filter
  DILATED_PORTABLE_GPU_FORWARD=pipe256 timeout 40 stdbuf -oL $BA --benchmark_filter="$2" --benchmark_min_time=0.01 --benchmark_out=$O/bench_$1.json --benchmark_out_format=json > $O/bench_$1.log 2>&1
  echo "bench $1 rc=$?"; grep -E '^BM_' $O/bench_$1.log | sed -E 's/ +/ /g; s/fwd LongNet.*//; s/tokens.*//; s/BM_Attention.kind:2.//; s/.dim:128.bwd:0.real_time//' | cut -c1-100
}
bench pipe256 "$F1|$F3"
echo "bench done t=$(el)"
# Nsight Compute: one launch of the pipelined kernel, branch w = 2048 of LongNet 64K x 4 heads.
K='regex:ForwardBranchKernelGpuPipelined'
NCU="ncu --clock-control none --kernel-name-base demangled -k $K --launch-count 1"
if command -v ncu > /dev/null && ! late 100; then
  M=smsp__sass_thread_inst_executed_op_ffma_pred_on.sum,smsp__inst_executed.sum,smsp__inst_executed_op_shared_ld.sum,smsp__inst_executed_op_shared_st.sum,smsp__inst_executed_op_local_ld.sum,smsp__inst_executed_op_local_st.sum,smsp__inst_executed_op_global_ld.sum,smsp__inst_executed_op_branch.sum,smsp__inst_executed_op_barrier.sum
  DILATED_PORTABLE_GPU_FORWARD=pipe256 timeout 70 $NCU --import-source no --set full --metrics $M \
    -o $O/ncu_pipe256 -f $BA --benchmark_filter="$F3" --benchmark_min_time=0.01 > $O/ncu_run.log 2>&1
  rc=$?
  if [ ! -f $O/ncu_pipe256.ncu-rep ] && ! late 100; then  # --metrics names unknown to this ncu: sets only
    DILATED_PORTABLE_GPU_FORWARD=pipe256 timeout 60 $NCU --import-source no --set full \
      -o $O/ncu_pipe256 -f $BA --benchmark_filter="$F3" --benchmark_min_time=0.01 > $O/ncu_run2.log 2>&1
    rc=$?
  fi
  echo "ncu rc=$rc t=$(el)"; tail -n 3 $O/ncu_run.log | cut -c1-200
  if [ -f $O/ncu_pipe256.ncu-rep ]; then
    timeout 20 ncu -i $O/ncu_pipe256.ncu-rep --print-details all > $O/ncu_pipe256.txt 2>&1
    timeout 20 ncu -i $O/ncu_pipe256.ncu-rep --page raw --csv > $O/ncu_pipe256_raw.csv 2>&1
    timeout 30 ncu -i $O/ncu_pipe256.ncu-rep --page source --csv --print-source sass > $O/ncu_pipe256_sass.csv 2>&1 || echo "source page rc=$?"
    gzip -f $O/ncu_pipe256_sass.csv $O/ncu_pipe256_raw.csv; gzip -f -k $O/ncu_pipe256.ncu-rep && rm -f $O/ncu_pipe256.ncu-rep
    grep -E 'Duration|Issue Slots Busy|Warp Cycles Per Issued|Executed Instructions  |Registers Per|Achieved Active Warps|No Eligible|Eligible Warps|L1/TEX Cache Throughput|Bank' $O/ncu_pipe256.txt | sed -E 's/ +/ /g' | head -16
    zcat $O/ncu_pipe256_raw.csv.gz | python3 -c '
import csv,sys
r=list(csv.reader(sys.stdin))
h=[i for i,x in enumerate(r[0])]
if len(r)>=3:
  kv=[(r[0][i],r[2][i]) for i in range(len(r[0]))]
  st=[(k.replace("smsp__average_warp_latency_issue_stalled_","").replace("smsp__average_warps_issue_stalled_","").replace("_per_issue_active.ratio",""),v) for k,v in kv if "issue_stalled" in k and k.endswith("per_issue_active.ratio")]
  def f(v):
    try: return float(v.replace(",",""))
    except: return 0
  st.sort(key=lambda t:-f(t[1]))
  print("stalls/issue:", "; ".join("%s %s"%t for t in st[:9]))
  for k,v in kv:
    if k.startswith("smsp__inst_executed") or "ffma" in k: print(k,v)
' 2>&1 | head -16
  fi
fi
echo "total t=$(el)"
