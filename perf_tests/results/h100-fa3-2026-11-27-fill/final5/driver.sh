#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): block-sparse ratios on the final kernels (c1942b9), three rounds,
# and LongNet 1M d128/d64 once more. Usage: final5.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/final5}; mkdir -p $O
N=/tmp/s7new5; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
summ() { python3 - "$1" "$2" <<'PY'
import json, sys
try: bb = json.load(open(sys.argv[1]))["benchmarks"]
except Exception as e: print(sys.argv[2], "no JSON", e); sys.exit()
for b in bb:
    g = lambda k: b.get(k, float("nan"))
    print("%-6s %-28s sync %.4f ms %.3f | stream %.4f ms %.3f | dense %.3f | host %.1f us" % (sys.argv[2],
        b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"), g("vs_dense_x_density"),
        g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms"), g("host_us")))
PY
}
for r in 1 2 3; do
  DILATED_BENCH_MIN_TIME=0.3 timeout 60 $N/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_out=$O/bs_$r.json --benchmark_out_format=json > $O/bs_$r.log 2>&1
  summ $O/bs_$r.json r$r; done
echo "t=$(el)"
DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' --benchmark_out=$O/ln.json --benchmark_out_format=json > $O/ln.log 2>&1
grep -E '^BM_' $O/ln.log | sed -E 's/ +/ /g' | cut -c1-150
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/final5.tar.gz -C $P $(basename $O) && rm -rf $O
