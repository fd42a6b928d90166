#!/usr/bin/env bash
# Lead, 2026-11-27 (sixth), research only: ncu of the LongNet 1M d128 forward's branches r = 2 and r = 4
# (launches 1 and 2 of a call) with the chains (8 key blocks a tile) and with every branch's keys (dup,
# 16 blocks), to locate the skipping branches' per-tile cost. Binaries: final tree 850073e.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/prof}; mkdir -p $O
D=/tmp/leadbin7; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D ./bench_fa3 && cp $B/*.so* $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt; ncu --version | tail -1 | tee -a $O/gpu.txt
for v in chain dup; do
  DILATED_FA3_LONGNET=$v DILATED_BENCH_MIN_TIME=0.01 timeout 100 ncu --clock-control none -k regex:forward_kernel --launch-skip 1 --launch-count 2 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section InstructionStats \
    -o $O/ln_$v $D/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/' > $O/ncu_$v.log 2>&1
  echo "$v rc=$? t=$(( $(date +%s)-T0 ))"
  ncu --import $O/ln_$v.ncu-rep --csv --page details > $O/ln_$v.csv 2>/dev/null
  grep -E '"(Duration|SM Frequency|Compute \(SM\) Throughput|Memory Throughput|Executed Ipc Active|Issue Slots Busy|No Eligible|Warp Cycles Per Issued Instruction|L2 Hit Rate|L1/TEX Hit Rate|DRAM Throughput|Achieved Occupancy|Grid Size|Executed Instructions)"' $O/ln_$v.csv | awk -F'","' '{print $5" | "$(NF-2)" | "$(NF-1)" | "$NF}' | sed 's/"//g' | head -40
done
echo "total $(( $(date +%s)-T0 ))s"
tar -czf $(dirname $O)/prof.tar.gz -C $(dirname $O) $(basename $O)
