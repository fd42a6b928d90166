#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session), research for the next session: where causal block-sparse 90% (16K, d128)
# and head_dim 64 block-sparse spend their time on the final kernels (c1942b9). Usage: diag6.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag6}; mkdir -p $O
N=/tmp/s7new6; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/sass_*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; ncu --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
SECT="--section SpeedOfLight --section WarpStateStats --section SourceCounters --section InstructionStats"
prof() { local l=$1 f=$2
  DILATED_BENCH_MIN_TIME=0.01 timeout 100 ncu --clock-control none -k regex:forward_kernel --launch-skip 1 --launch-count 1 $SECT -f -o $O/ncu_$l $N/bench_fa3 --benchmark_filter="$f" > $O/ncu_$l.log 2>&1
  echo "ncu $l rc=$? t=$(el)"
  ncu -i $O/ncu_$l.ncu-rep --page details --print-details all > $O/ncu_${l}_details.txt 2>&1
  ncu -i $O/ncu_$l.ncu-rep --page source --csv --print-source sass > $O/ncu_${l}_sass.csv 2>&1 && gzip -f $O/ncu_${l}_sass.csv
  python3 $N/sass_samples.py $O/ncu_${l}_sass.csv.gz $O/ncu_${l}_samples.txt > /dev/null 2>&1
  grep -E '  Duration|SM Frequency|Compute \(SM\) Throughput|Tensor Cycles Active  |No Eligible|Executed Instructions  ' $O/ncu_${l}_details.txt | head -8
  rm -f $O/ncu_$l.ncu-rep
}
prof bs_causal 'BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
prof bs_d64 'BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:64/causal:0'
prof bs_d128 'BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag6.tar.gz -C $P $(basename $O) && rm -rf $O
