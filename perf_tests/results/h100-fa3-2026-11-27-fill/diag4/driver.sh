#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session), research: where LongNet 1M d128's forward spends its per-tile time
# after the multiply-shift decode (c1942b9): ncu source counters of branch 0 (writes) and branch 1 (chain,
# skips, merges); per-branch durations of one call. Usage: diag4.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag4}; mkdir -p $O
N=/tmp/s7new4; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/sass_*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
DILATED_BENCH_MIN_TIME=0.01 timeout 90 ncu --clock-control none -k regex:forward_kernel --launch-count 5 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second $N/bench_fa3 --benchmark_filter="$F" > $O/durations.log 2>&1
grep -E "forward_kernel|gpu__time_duration|per_second" $O/durations.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(ForwardArgs\).*//; s/ +/ /g' | head -16
echo "t=$(el)"
SECT="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section SourceCounters --section InstructionStats"
for l in 0 1; do
  DILATED_BENCH_MIN_TIME=0.01 timeout 150 ncu --clock-control none -k regex:forward_kernel --launch-skip $l --launch-count 1 $SECT -f -o $O/ncu_b$l $N/bench_fa3 --benchmark_filter="$F" > $O/ncu_b$l.log 2>&1
  echo "ncu b$l rc=$? t=$(el)"
  ncu -i $O/ncu_b$l.ncu-rep --page details --print-details all > $O/ncu_b${l}_details.txt 2>&1
  ncu -i $O/ncu_b$l.ncu-rep --page source --csv --print-source sass > $O/ncu_b${l}_sass.csv 2>&1 && gzip -f $O/ncu_b${l}_sass.csv
  python3 $N/sass_samples.py $O/ncu_b${l}_sass.csv.gz $O/ncu_b${l}_samples.txt > /dev/null 2>&1
  grep -E '  Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|DRAM Throughput|Executed Instructions  ' $O/ncu_b${l}_details.txt | head -8
  rm -f $O/ncu_b$l.ncu-rep
done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag4.tar.gz -C $P $(basename $O) && rm -rf $O
