#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4: the lazy softmax (v2: decisions per warp, S computed again with mma.sync on overflow; softmax.cuh lazy_probabilities: no running max
# after a tile's first key block; power-of-two settling).
# A. test_fa3_numerics (incl. ScoresRisingAfterTheFirstKeyBlock: the settle and overflow paths), a forward
#    subset at 2 CTAs, synccheck on the new test's small cases.
# B. DILATED_FA3_SOFTMAX=exact vs default (lazy): LongNet 1M d128 x3 alternating, d64, d256; dense and causal
#    16K d64/d128 x2; block-sparse 90% 16K.
# C. peers (cuDNN, FA2, the PyTorch LongNet reference) with the default build, same call.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run4}; mkdir -p $O
N=/tmp/s9new4; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } | tee $O/machine.txt
timeout 240 $N/test_fa3_numerics --gtest_color=no > $O/numerics.log 2>&1 &
( export DILATED_FA3_SOFTMAX=exact; timeout 240 $N/test_fa3_numerics --gtest_color=no > $O/numerics_exact.log 2>&1 ) &
S='*/fused_r124_d128_bf16:*/fused_then_r6_d128_bf16:*/dense_d64_bf16:*/dense_d128_causal_fp16:*/longnet_d128_bf16:*/dense_d256_bf16:*/causal_many_tiles_d128_bf16:*/block_sparse_random90_d128_bf16:*/chain_r1248_d128_bf16:*/dense_d64_causal_bf16'
( export DILATED_FA3_MAX_CTAS=2; timeout 240 $N/test_fa3_forward --gtest_color=no --gtest_filter="$S" > $O/fwd_cta2.log 2>&1 ) &
( timeout 300 compute-sanitizer --tool synccheck --error-exitcode 9 $N/test_fa3_numerics --gtest_color=no --gtest_filter='*LogitsOf1e4*:*TinyAndHuge*' > $O/synccheck.log 2>&1 ) &
( timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $N/test_fa3_numerics --gtest_color=no --gtest_filter='*LogitsOf1e4*:*TinyAndHuge*:*ScoresRising*' > $O/memcheck.log 2>&1 ) &
wait
for f in numerics numerics_exact fwd_cta2 synccheck memcheck; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) |ERROR SUMMARY' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] |Failure|Expected|Which is' $O/$f.log | head -8; done
echo "A t=$(el)"
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3(Forward|BlockSparseVsDense)\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-140; }
cfg() { if [ $1 = exact ]; then export DILATED_FA3_SOFTMAX=exact; else unset DILATED_FA3_SOFTMAX; fi; }
bench() { local name=$1 filter=$2; DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter="$filter" --benchmark_out=$O/$name.json --benchmark_out_format=json > $O/$name.log 2>&1; row $O/$name.log $name; }
for r in 1 2 3; do for v in exact lazy; do cfg $v; bench ln_${v}_$r 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'; done; done
for v in exact lazy; do cfg $v; bench ln64_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/'; bench ln256_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:256/'; done
D='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128|256)/|BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0/'
for r in 1 2; do for v in exact lazy; do cfg $v; bench dense_${v}_$r "$D"; done; done; unset DILATED_FA3_SOFTMAX
echo "B t=$(el)"
timeout 200 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet|  ref)' $O/peers.log
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run4.tar.gz -C $P $(basename $O) && rm -rf $O
