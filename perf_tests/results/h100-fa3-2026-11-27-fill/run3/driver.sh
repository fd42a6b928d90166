#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): the forward consumers' tile decode by multiply-shift (fast_decode.hpp)
# on top of the block-sparse changes (run2).
# A. every cuda_fa3 test binary (new build), concurrently; forward at 3 CTAs and with DILATED_FA3_DECODE=old;
#    compute-sanitizer on dense causal (tile counter), LongNet and chain cases.
# B. (GPU alone) LongNet 1M d128/d64 and dense/causal d128 16K: fast decode vs DILATED_FA3_DECODE=old, same
#    binary, alternating, two rounds.
# C. the peers with the same protocol (h100_fa3_peers.py): cuDNN/FA2 and the PyTorch LongNet reference.
# Usage: run3.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run3}; mkdir -p $O
N=/tmp/s7new3; mkdir -p $N
tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_support test_fa3_numerics test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_auto_plan test_offload_fa3; do
  bg ${t#test_} 200 $N/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fwd_cta3 200 $N/test_fa3_forward; wait )
( export DILATED_FA3_DECODE=old; bg fwd_old_decode 200 $N/test_fa3_forward --gtest_filter='*longnet*:*chain*:*dense*:*w_mod_r*:*r16*:*unkept*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $N/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san synccheck dense_longnet 150 test_fa3_forward '*/dense_d128_causal_bf16:*/longnet_d128_bf16:*chain_r124_partial_d64_bf16'
san racecheck dense_causal 150 test_fa3_forward '*/dense_d128_causal_bf16:*chain_r124_partial_d64_bf16'
san memcheck longnet 150 test_fa3_forward '*/longnet_d128_bf16:*/longnet_d128_causal_fp16:*/r16_d64_bf16:*chain*d128*'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
echo "=== B. fast decode vs DILATED_FA3_DECODE=old (same binary, alternating)"
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:(128|64)/|BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/'
for r in 1 2; do for v in fast old; do
  if [ $v = old ]; then export DILATED_FA3_DECODE=old; else unset DILATED_FA3_DECODE; fi
  DILATED_BENCH_MIN_TIME=0.5 timeout 60 $N/bench_fa3 --benchmark_filter="$F" --benchmark_out=$O/dec_${v}_$r.json --benchmark_out_format=json > $O/dec_${v}_$r.log 2>&1
  grep -E '^BM_' $O/dec_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:0.500\/manual_time//' | awk -v t=${v}_$r '{print t, $0}' | cut -c1-140
done; done; unset DILATED_FA3_DECODE; echo "B t=$(el)"
echo "=== C. peers, same protocol"
timeout 200 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:[01]/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet)' $O/peers.log
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run3.tar.gz -C $P $(basename $O) && rm -rf $O
