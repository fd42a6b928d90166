#!/usr/bin/env bash
# Lead, 2026-11-27 (eighth session): the fused LongNet chain (r = 1, 2, 4 in one launch, longnet_fused_chain.hpp).
# A. test binaries concurrently (forward whole, backward, window, offload, auto_plan); forward's fused and
#    chain cases at 3 CTAs and with DILATED_FA3_LONGNET=chain; compute-sanitizer on small fused cases.
# B. (GPU alone) LongNet 1M d128/d64: fused (default) vs DILATED_FA3_LONGNET=chain, same binary, alternating.
# C. the peers (h100_fa3_peers.py): the PyTorch LongNet reference in the same call.
# Usage: run1.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run1}; mkdir -p $O
N=/tmp/s8new1; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_window test_auto_plan test_offload_fa3; do bg ${t#test_} 200 $N/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fwd_cta3 200 $N/test_fa3_forward --gtest_filter='*fused*:*chain*:*longnet*:*nested*'; wait )
( export DILATED_FA3_LONGNET=chain; bg fwd_chain 200 $N/test_fa3_forward --gtest_filter='*fused*:*chain*:*longnet*:*nested*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $N/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san memcheck fused 200 test_fa3_forward '*/fused_r124_d64_bf16:*/fused_r248_d128_bf16:*/fused_after_r3_d64_fp16:*/fused_r124_d256_bf16'
san racecheck fused 200 test_fa3_forward '*/fused_r124_d64_bf16'
san synccheck fused 200 test_fa3_forward '*/fused_r124_d64_bf16:*/fused_r248_d128_bf16'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
echo "=== B. fused vs DILATED_FA3_LONGNET=chain (same binary, alternating)"
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(128|64)/'
for r in 1 2; do for v in fused chain; do
  if [ $v = chain ]; then export DILATED_FA3_LONGNET=chain; else unset DILATED_FA3_LONGNET; fi
  DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter="$F" --benchmark_out=$O/ln_${v}_$r.json --benchmark_out_format=json > $O/ln_${v}_$r.log 2>&1
  grep -E '^BM_' $O/ln_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=${v}_$r '{print t, $0}' | cut -c1-140
done; done; unset DILATED_FA3_LONGNET; echo "B t=$(el)"
echo "=== C. peers, same protocol (LongNet 1M d128 and dense d128 16K)"
timeout 220 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet)' $O/peers.log
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run1.tar.gz -C $P $(basename $O) && rm -rf $O
