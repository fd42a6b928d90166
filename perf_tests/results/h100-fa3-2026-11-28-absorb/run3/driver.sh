#!/usr/bin/env bash
# Lead, 2026-11-28 (tenth session), issue 4, call 3: main (bc88e23: the absorb attempt reverted) on
# today's H100, against a variant whose lazy-softmax accept branch carries __builtin_expect (v1: code
# layout of the rare paths), alternating; then the PyTorch LongNet reference with main.
B=$(cd "$(dirname "$0")" && pwd); OUTD=${1:-/tmp/out3}; mkdir -p $OUTD; O=/tmp/run3; mkdir -p $O
N=/tmp/s10new3; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
L=$OUTD/log.txt
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } > $L 2>&1
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-150; }
bench() { DILATED_BENCH_MIN_TIME=1 timeout 40 $N/$3 --benchmark_filter="$2" --benchmark_out=$O/b_$1.json --benchmark_out_format=json > $O/b_$1.log 2>&1; row $O/b_$1.log $1 | tee -a $L; }
LN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for r in 1 2 3; do bench main_$r "$LN" bench_fa3; bench v1_$r "$LN" bench_fa3_v1; done
echo "B t=$(el)" | tee -a $L
timeout 100 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json "--bench-args=--benchmark_filter=$LN" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)" | tee -a $L; grep -E '^(case|longnet|  ref)' $O/peers.log | tee -a $L
echo "total $(el)s" | tee -a $L
cp $L $O/ && tar -czf $OUTD/run3.tar.gz -C /tmp run3
