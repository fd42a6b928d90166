#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): LongNet 1M d128 vs the PyTorch reference, the reference timed both
# ways (best of 4 calls as before, and the mean over >= 1 s back to back like bench_fa3), twice.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/peers7}; mkdir -p $O
N=/tmp/s7new7; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N ./bench_fa3 && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader; cat $B/new_commit.txt
  python3 -c 'import torch; print("torch", torch.__version__)'; } | tee $O/machine.txt
for r in 1 2; do
  timeout 120 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers_$r.json \
    "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers_$r.log 2>&1
  echo "round $r rc=$?"; grep -E '^(case|longnet|  ref)' $O/peers_$r.log
done
P=$(dirname $O); tar -czf $P/peers7.tar.gz -C $P $(basename $O) && rm -rf $O
