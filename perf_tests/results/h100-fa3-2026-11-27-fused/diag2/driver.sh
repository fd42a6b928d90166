#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session): why the fused LongNet chain (run1) is no faster than the per-member chain.
# A. fused/chain/longnet test cases of the new build (weights cached per key class).
# B. LongNet 1M d128/d64, alternating: new fused, run1's fused (bench_fa3_run1), chain; with nvidia-smi clocks/power.
# C. ncu: per-kernel durations, fused mode and chain mode; SOL/memory/warp-state/instruction sections of the
#    fused kernel and chain branches 0 and 1.
# Usage: diag2.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag2}; mkdir -p $O
N=/tmp/s8new2; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N && tar -xJf $B/old.tar.xz -C $N && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 300 $N/test_fa3_forward --gtest_color=no --gtest_filter='*fused*:*chain*:*longnet*:*nested*' > $O/fwd_subset.log 2>&1 &
TP=$!
( export DILATED_FA3_MAX_CTAS=3; timeout 300 $N/test_fa3_forward --gtest_color=no --gtest_filter='*fused*' > $O/fwd_fused_cta3.log 2>&1 ) &
wait
for f in fwd_subset fwd_fused_cta3; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) ' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | sed 's/, where.*//' | sort -u | head; done
echo "A t=$(el)"
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(128|64)/'
for r in 1 2; do for v in new run1 chain; do
  bin=$N/bench_fa3; [ $v = run1 ] && bin=$N/bench_fa3_run1
  if [ $v = chain ]; then export DILATED_FA3_LONGNET=chain; else unset DILATED_FA3_LONGNET; fi
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 > $O/smi_${v}_$r.csv & SP=$!
  DILATED_BENCH_MIN_TIME=1 timeout 60 $bin --benchmark_filter="$F" --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  kill $SP; sleep 0.2
  med=$(sort -t, -k1 -n $O/smi_${v}_$r.csv | awk -F, '{a[NR]=$1; p[NR]=$2} END {print "sm_clock_median", a[int(NR/2)+1], "MHz"}')
  grep -E '^BM_' $O/ln_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=${v}_$r '{print t, $0}' | cut -c1-120
  echo "${v}_$r $med"
done; done; unset DILATED_FA3_LONGNET; echo "B t=$(el)"
F1='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for v in fused chain; do
  if [ $v = chain ]; then export DILATED_FA3_LONGNET=chain; n=5; else unset DILATED_FA3_LONGNET; n=3; fi
  DILATED_BENCH_MIN_TIME=0.01 timeout 90 ncu --clock-control none -k regex:forward_kernel --launch-count $n --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum $N/bench_fa3 --benchmark_filter="$F1" > $O/dur_$v.log 2>&1
  echo "== $v"; grep -E "forward_kernel|gpu__time_duration|per_second|dram__bytes|hit_rate|inst_executed" $O/dur_$v.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(ForwardArgs\).*//; s/ +/ /g' | cut -c1-150 | head -40
done; unset DILATED_FA3_LONGNET; echo "C1 t=$(el)"
SECT="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section InstructionStats --section ComputeWorkloadAnalysis"
run_ncu() { local name=$1 skip=$2
  DILATED_BENCH_MIN_TIME=0.01 timeout 150 ncu --clock-control none -k regex:forward_kernel --launch-skip $skip --launch-count 1 $SECT -f -o $O/ncu_$name $N/bench_fa3 --benchmark_filter="$F1" > $O/ncu_$name.log 2>&1
  echo "ncu $name rc=$? t=$(el)"
  ncu -i $O/ncu_$name.ncu-rep --page details --print-details all > $O/ncu_${name}_details.txt 2>&1
  grep -E '  Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|DRAM Throughput|L2 Hit Rate  |Executed Instructions  |Tensor' $O/ncu_${name}_details.txt | head -14
  rm -f $O/ncu_$name.ncu-rep; }
unset DILATED_FA3_LONGNET; run_ncu fused 0
export DILATED_FA3_LONGNET=chain; run_ncu chain_b0 0; run_ncu chain_b1 1; unset DILATED_FA3_LONGNET
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag2.tar.gz -C $P $(basename $O) && rm -rf $O
