#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): block-sparse patterns users run (sliding window, global + local) vs dense
# x density, two rounds, and the 90% random cases once more. Usage: run9.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run9}; mkdir -p $O
N=/tmp/s7new9; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
summ() { python3 - "$1" "$2" <<'PY'
import json, sys
try: bb = json.load(open(sys.argv[1]))["benchmarks"]
except Exception as e: print(sys.argv[2], "no JSON", e); sys.exit()
for b in bb:
    g = lambda k: b.get(k, float("nan"))
    print("%-4s %-58s density %.4f | sync %.4f ms %.3f | stream %.4f ms %.3f | dense %.3f ms" % (sys.argv[2],
        b["name"].replace("BM_Fa3BlockSparse", "").split("/min_time")[0], g("density"), g("real_time"),
        g("vs_dense_x_density"), g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms")))
PY
}
for r in 1 2; do
  DILATED_BENCH_MIN_TIME=0.3 timeout 90 $N/bench_fa3 --benchmark_filter='BM_Fa3BlockSparse' --benchmark_out=$O/bs_$r.json --benchmark_out_format=json > $O/bs_$r.log 2>&1
  echo "round $r rc=$?"; summ $O/bs_$r.json r$r
done
P=$(dirname $O); tar -czf $P/run9.tar.gz -C $P $(basename $O) && rm -rf $O
