#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session): fused LongNet chain, v3 walker (a compare per block, weights per key class).
# A. fused/chain/longnet test cases (+ fused at 3 CTAs, memcheck of two fused cases).
# B. LongNet 1M: v3 (new) vs v2 (diag2's) vs the per-member chain, d128/d64 alternating, two rounds; d256 v3 vs chain.
# C. peers (h100_fa3_peers.py): the PyTorch LongNet reference and cuDNN dense in the same call.
# Usage: run3.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run3}; mkdir -p $O
N=/tmp/s8new3; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N && tar -xJf $B/old.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 300 $N/test_fa3_forward --gtest_color=no --gtest_filter='*fused*:*chain*:*longnet*:*nested*' > $O/fwd_subset.log 2>&1 &
( export DILATED_FA3_MAX_CTAS=3; timeout 300 $N/test_fa3_forward --gtest_color=no --gtest_filter='*fused*' > $O/fwd_fused_cta3.log 2>&1 ) &
( export DILATED_FA3_MAX_CTAS=2; timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $N/test_fa3_forward --gtest_color=no --gtest_filter='*/fused_r124_d64_bf16:*/fused_r248_d128_fp16:*/fused_r124_d256_bf16' > $O/memcheck_fused.log 2>&1 ) &
wait
for f in fwd_subset fwd_fused_cta3 memcheck_fused; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) |ERROR SUMMARY' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | sed 's/, where.*//' | sort -u | head; done
echo "A t=$(el)"
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(128|64)/'
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-120; }
for r in 1 2; do for v in v3 v2 chain; do
  bin=$N/bench_fa3; [ $v = v2 ] && bin=$N/bench_fa3_v2
  if [ $v = chain ]; then export DILATED_FA3_LONGNET=chain; else unset DILATED_FA3_LONGNET; fi
  DILATED_BENCH_MIN_TIME=1 timeout 60 $bin --benchmark_filter="$F" --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  row $O/ln_${v}_$r.log ${v}_$r
done; done
for r in 1 2; do for v in v3 chain; do
  if [ $v = chain ]; then export DILATED_FA3_LONGNET=chain; else unset DILATED_FA3_LONGNET; fi
  DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:256/' --benchmark_out=$O/ln256_${v}_$r.json --benchmark_out_format=json > $O/ln256_${v}_$r.log 2>&1
  row $O/ln256_${v}_$r.log d256_${v}_$r
done; done; unset DILATED_FA3_LONGNET; echo "B t=$(el)"
echo "=== C. peers, same protocol"
timeout 240 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet)' $O/peers.log
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run3.tar.gz -C $P $(basename $O) && rm -rf $O
