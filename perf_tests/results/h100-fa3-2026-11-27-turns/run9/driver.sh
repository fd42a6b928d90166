#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4: K released before the softmax when the lazy softmax is off (a runtime
# choice, so the kernel has diag5's code layout) - "k1" - against b5b9ce8's kernels ("b5b9"): forward whole and
# numerics with k1 first (correctness), then LongNet 1M d128 + dense/causal 16K d128 alternating x3, d64/d256
# LongNet, then the peers with k1.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run9}; mkdir -p $O
N=/tmp/s9new9; mkdir -p $N; tar -xJf $B/k1.tar.xz -C $N && tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && mv $N/bench_fa3 $N/bench_fa3_b5b9 && tar -xJf $B/k1.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 300 $N/test_fa3_forward --gtest_color=no > $O/fwd.log 2>&1 &
timeout 300 $N/test_fa3_numerics --gtest_color=no > $O/numerics.log 2>&1 &
( export DILATED_FA3_SOFTMAX=exact; timeout 300 $N/test_fa3_numerics --gtest_color=no > $O/numerics_exact.log 2>&1 ) &
wait
for f in fwd numerics numerics_exact; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) ' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | head -5; done
echo "A t=$(el)"
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
for r in 1 2 3; do for v in b5b9 k1; do bin=$N/bench_fa3; [ $v = b5b9 ] && bin=$N/bench_fa3_b5b9
  DILATED_BENCH_MIN_TIME=1 timeout 90 $bin --benchmark_filter='BM_Fa3Forward/kind:(2/batch:1/seq:1048576|[01]/batch:1/seq:16384)/heads:16/dim:128/' --benchmark_out=$O/${v}_$r.json --benchmark_out_format=json > $O/${v}_$r.log 2>&1
  row $O/${v}_$r.log ${v}_$r; done; done
DILATED_BENCH_MIN_TIME=1 timeout 120 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(64|256)/' --benchmark_out=$O/ln.json --benchmark_out_format=json > $O/ln.log 2>&1
row $O/ln.log k1
echo "B t=$(el)"
timeout 200 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet|  ref)' $O/peers.log
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run9.tar.gz -C $P $(basename $O) && rm -rf $O
