#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session): the committed kernels (lazy softmax v2) against their peers in one call
# (cuDNN, FA2, the PyTorch LongNet reference; dense/causal forward d64/128/256, backward, LongNet d128),
# then LongNet 1M d128 DILATED_FA3_SOFTMAX=exact vs default alternating, and d64/d256.
# Usage: bash driver.sh OUTDIR (from a carry folder with new.tar.xz, the .so files and the peers scripts)
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/peers7}; mkdir -p $O
N=/tmp/s9new7; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 420 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:[01]/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet|  ref)' $O/peers.log
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
for r in 1 2; do for v in exact lazy; do
  if [ $v = exact ]; then export DILATED_FA3_SOFTMAX=exact; else unset DILATED_FA3_SOFTMAX; fi
  DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/' --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  row $O/ln_${v}_$r.log ln_${v}_$r
done; done; unset DILATED_FA3_SOFTMAX
DILATED_BENCH_MIN_TIME=1 timeout 120 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(64|256)/' --benchmark_out=$O/ln.json --benchmark_out_format=json > $O/ln.log 2>&1
row $O/ln.log ln
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/peers7.tar.gz -C $P $(basename $O) && rm -rf $O
