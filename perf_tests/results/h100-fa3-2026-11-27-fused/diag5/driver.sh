#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session), research: where the fused LongNet chain kernel (v4) spends its samples
# (ncu source counters, grouped by execution count: per tile vs per key block); per-kernel durations of one
# LongNet 1M d128 call; dense 16K d128 under ncu (per-clock comparison); head_dim 64 fused vs chain, two rounds.
# Usage: diag5.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag5}; mkdir -p $O
N=/tmp/s8new5; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/sass_*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
for r in 1 2; do for v in chain fused; do
  export DILATED_FA3_LONGNET=$v
  DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/' --benchmark_out=$O/ln64_${v}_$r.json --benchmark_out_format=json > $O/ln64_${v}_$r.log 2>&1
  row $O/ln64_${v}_$r.log d64_${v}_$r
done; done; unset DILATED_FA3_LONGNET; echo "t=$(el)"
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
DILATED_BENCH_MIN_TIME=0.01 timeout 90 ncu --clock-control none -k regex:forward_kernel --launch-count 3 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active $N/bench_fa3 --benchmark_filter="$F" > $O/durations.log 2>&1
grep -E "forward_kernel|gpu__time_duration|per_second|tensor" $O/durations.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(ForwardArgs\).*//; s/ +/ /g' | cut -c1-130
DILATED_BENCH_MIN_TIME=0.01 timeout 90 ncu --clock-control none -k regex:forward_kernel --launch-count 1 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/' > $O/dense.log 2>&1
grep -E "forward_kernel|gpu__time_duration|per_second|tensor" $O/dense.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(ForwardArgs\).*//; s/ +/ /g' | cut -c1-130
echo "t=$(el)"
SECT="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section SourceCounters --section InstructionStats"
DILATED_BENCH_MIN_TIME=0.01 timeout 150 ncu --clock-control none -k regex:forward_kernel --launch-count 1 $SECT -f -o $O/ncu_fused $N/bench_fa3 --benchmark_filter="$F" > $O/ncu_fused.log 2>&1
echo "ncu rc=$? t=$(el)"
ncu -i $O/ncu_fused.ncu-rep --page details --print-details all > $O/ncu_fused_details.txt 2>&1
ncu -i $O/ncu_fused.ncu-rep --page source --csv --print-source sass > $O/ncu_fused_sass.csv 2>&1 && gzip -f $O/ncu_fused_sass.csv
python3 $N/sass_samples.py $O/ncu_fused_sass.csv.gz $O/ncu_fused_samples.txt
grep -E '  Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Instructions  ' $O/ncu_fused_details.txt | head -8
rm -f $O/ncu_fused.ncu-rep
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag5.tar.gz -C $P $(basename $O) && rm -rf $O
