#!/usr/bin/env bash
# Lead, 2026-11-28 (tenth session), issue 4, call 1 (commit 05052ec + a 32 / 240 register split for the
# kDedup kernels, uncommitted): HUNG - every kDedup launch blocked in setmaxnreg.inc (see ../README.md).
# A. correctness: test_fa3_forward's LongNet/fused/absorb cases (+ at 2 CTAs), test_fa3_numerics,
#    memcheck + racecheck on a small absorbed case.
# B. DILATED_FA3_LONGNET=noabsorb vs default: LongNet 1M d128 x3 alternating, d64, d256.
# C. peers (PyTorch LongNet reference) with the default, same call.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run1}; mkdir -p $O
N=/tmp/s10new1; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
F='*fused*:*absorb*:*chain*:*longnet*:*nested*'
timeout 280 $N/test_fa3_forward --gtest_color=no --gtest_filter="$F" > $O/fwd.log 2>&1 &
( export DILATED_FA3_MAX_CTAS=2; timeout 280 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb*:*fused_then_r6*' > $O/fwd_cta2.log 2>&1 ) &
timeout 280 $N/test_fa3_numerics --gtest_color=no > $O/numerics.log 2>&1 &
( timeout 280 compute-sanitizer --tool memcheck --error-exitcode 9 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb_r36_d128_bf16:*fused_then_r6_d128_fp16' > $O/memcheck.log 2>&1 ) &
( timeout 280 compute-sanitizer --tool racecheck --error-exitcode 9 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb_r36_d128_bf16' > $O/racecheck.log 2>&1 ) &
wait
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3(Forward|BlockSparseVsDense)\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-140; }
cfg() { if [ $1 = noabsorb ]; then export DILATED_FA3_LONGNET=noabsorb; else unset DILATED_FA3_LONGNET; fi; }
bench() { local name=$1 filter=$2; DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter="$filter" --benchmark_out=$O/$name.json --benchmark_out_format=json > $O/$name.log 2>&1; row $O/$name.log $name; }
for r in 1 2 3; do for v in noabsorb absorb; do cfg $v; bench ln_${v}_$r 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'; done; done
for v in noabsorb absorb; do cfg $v; bench ln64_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/'; bench ln256_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:256/'; done
unset DILATED_FA3_LONGNET
timeout 200 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers.log 2>&1
P=$(dirname $O); tar -czf $P/run1.tar.gz -C $P $(basename $O) && rm -rf $O
