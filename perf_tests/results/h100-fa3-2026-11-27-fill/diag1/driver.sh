#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session), research: why causal block-sparse 90% costs 2.7x dense x density
# (half the key blocks of the non-causal case in more time), and the SM clock under sustained LongNet / dense load.
# Binaries: final tree 850073e (bins.tar.xz). Usage: diag1.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/diag1}; mkdir -p $O
D=/tmp/s7bin; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D ./bench_fa3 && cp $B/*.so* $B/*.py $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; cat $B/commit.txt; } | tee $O/machine.txt
BSC='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
BSN='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
echo "=== A. causal block-sparse variants (sync ratio | stream ratio)"
summ() { python3 - "$1" "$2" <<'PY'
import json, sys
try: bb = json.load(open(sys.argv[1]))["benchmarks"]
except Exception as e: print(sys.argv[2], "no JSON", e); sys.exit()
for b in bb:
    g = lambda k: b.get(k, float("nan"))
    print("%-10s %-28s sync %.4f ms %.3f | stream %.4f ms %.3f | dense %.3f | host %.1f us" % (sys.argv[2],
        b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"), g("vs_dense_x_density"),
        g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms"), g("host_us")))
PY
}
run() { local tag=$1 f=$2; shift 2; env "$@" DILATED_BENCH_MIN_TIME=0.2 timeout 30 $D/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_$tag.json --benchmark_out_format=json > $O/b_$tag.log 2>&1; summ $O/b_$tag.json $tag; }
run main_c "$BSC"
run main_n "$BSN"
run tile_c "$BSC" DILATED_FA3_BLOCK_SPARSE_GRID=tile
run kord_c "$BSC" DILATED_FA3_BLOCK_SPARSE_CAUSAL_ORDER=kernel
run oldd_c "$BSC" DILATED_FA3_BS=old
echo "A t=$(el)"
echo "=== B. ncu: causal block-sparse forward kernel (+ fill kernel durations), non-causal for comparison"
SECT="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --section InstructionStats --section LaunchStats"
prof() { local l=$1 f=$2 skip=$3
  DILATED_BENCH_MIN_TIME=0.01 timeout 100 ncu --clock-control none -k regex:forward_kernel --launch-skip $skip --launch-count 1 $SECT -f -o $O/ncu_$l $D/bench_fa3 --benchmark_filter="$f" > $O/ncu_$l.log 2>&1
  echo "ncu $l rc=$? t=$(el)"
  ncu -i $O/ncu_$l.ncu-rep --page details --print-details all > $O/ncu_${l}_details.txt 2>&1
  ncu -i $O/ncu_$l.ncu-rep --page source --csv --print-source sass > $O/ncu_${l}_sass.csv 2>&1 && gzip -f $O/ncu_${l}_sass.csv
  python3 $D/sass_samples.py $O/ncu_${l}_sass.csv.gz $O/ncu_${l}_samples.txt > /dev/null 2>&1
  grep -E '^  [a-z].*forward_kernel|  Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|DRAM Throughput|L2 Hit Rate  |Grid Size|Executed Instructions  ' $O/ncu_${l}_details.txt | sed -E 's/dilated::cuda_fa3::details:://g; s/\(dilated.*//' | head -14
}
prof bs_c "$BSC" 1
prof bs_n "$BSN" 1
DILATED_BENCH_MIN_TIME=0.01 timeout 60 ncu --clock-control none -k regex:"fill_empty|forward_kernel" --launch-count 6 --metrics gpu__time_duration.sum $D/bench_fa3 --benchmark_filter="$BSC" > $O/ncu_durations.log 2>&1
grep -E "fill_empty|forward_kernel|gpu__time_duration" $O/ncu_durations.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(dilated.*//' | head -14
echo "B t=$(el)"
echo "=== C. SM clock / power while LongNet 1M d128 and dense d128 16K run (nvidia-smi every 100 ms)"
clk() { local tag=$1 f=$2
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $O/clk_$tag.csv & local P=$!
  DILATED_BENCH_MIN_TIME=2 timeout 40 $D/bench_fa3 --benchmark_filter="$f" > $O/clk_$tag.log 2>&1; kill $P
  grep -E '^BM_' $O/clk_$tag.log | sed -E 's/ +/ /g' | cut -c1-160
  python3 - $O/clk_$tag.csv $tag <<'PY'
import sys
rows=[l.split(',') for l in open(sys.argv[1]) if l.count(',')>=3]
v=[(float(r[1].split()[0]), float(r[2].split()[0])) for r in rows if 'MHz' in r[1]]
busy=[x for x in v if x[1] > 300]
if busy:
    c=sorted(x[0] for x in busy); p=sorted(x[1] for x in busy)
    print("%s: %d busy samples, SM MHz median %.0f (p10 %.0f, p90 %.0f), power W median %.0f (max %.0f)" % (sys.argv[2], len(busy), c[len(c)//2], c[len(c)//10], c[9*len(c)//10], p[len(p)//2], p[-1]))
else: print(sys.argv[2], "no busy samples", len(v))
PY
}
clk longnet 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
clk dense 'BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/'
clk bs_n "$BSN"
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/diag1.tar.gz -C $P $(basename $O) && rm -rf $O
