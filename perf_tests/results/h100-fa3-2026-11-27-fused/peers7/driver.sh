#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session): the peers (h100_fa3_peers.py: PyTorch FLASH/cuDNN SDPA and the PyTorch
# LongNet reference, timed like ours) on the committed tree (0ef4eec), and bench_fa3's forward (all cases) once.
# Usage: peers7.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/peers7}; mkdir -p $O
N=/tmp/s8new7; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 420 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:[01]/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet)' $O/peers.log
DILATED_BENCH_MIN_TIME=1 timeout 120 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' --benchmark_out=$O/ln.json --benchmark_out_format=json > $O/ln.log 2>&1
grep -E '^BM_' $O/ln.log | sed -E 's/ +/ /g' | cut -c1-130
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/peers7.tar.gz -C $P $(basename $O) && rm -rf $O
