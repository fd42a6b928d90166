#!/usr/bin/env bash
# Lead, 2026-11-28 (eleventh session), issue 4, call 1: a hot key-block loop for the lazy softmax's
# common case (forward_kernel.cuh consume). Three builds of libdilated_attention_cuda_fa3.so, same
# test/bench executables: main (2cce6e7), varA (next_hot_loop.patch: fused kernel only), varC (fused +
# kDedup head_dim 128, block_keys/softmax_block split). A. correctness of varC (+ varA's numerics);
# B. LongNet 1M alternating main / varA / varC, d64 / d256 / dense checks; C. peers with varC.
B=$(cd "$(dirname "$0")" && pwd); OUTD=${1:-/tmp/out1}; mkdir -p $OUTD; O=/tmp/run1; mkdir -p $O/t
N=/tmp/s11; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/bin/
export PATH=/usr/local/cuda/bin:$PATH
lib() { echo "$N/$1:$N/bin:/usr/local/cuda/lib64"; }
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
L=$OUTD/log.txt
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } > $L 2>&1
cat $L
tst() { local v=$1 name=$2; shift 2; LD_LIBRARY_PATH=$(lib $v) timeout 300 "$@" > $O/t/${v}_$name.log 2>&1; echo "rc=$?" >> $O/t/${v}_$name.log; }
X=$N/bin
tst varC fwd $X/test_fa3_forward --gtest_color=no &
tst varC num $X/test_fa3_numerics --gtest_color=no &
tst varA num $X/test_fa3_numerics --gtest_color=no --gtest_filter='*ScoresRising*' &
tst varC win $X/test_fa3_window --gtest_color=no &
tst varC winnum $X/test_fa3_window_numerics --gtest_color=no &
tst varC bs $X/test_fa3_block_sparse --gtest_color=no &
tst varC sync compute-sanitizer --tool synccheck --error-exitcode 9 $X/test_fa3_forward --gtest_color=no --gtest_filter='*fused_r124_d128_bf16:*chain_r1248_d128_bf16:*longnet_d128_bf16:*fused_then_r6_d128_bf16' &
tst varC syncnum compute-sanitizer --tool synccheck --error-exitcode 9 $X/test_fa3_numerics --gtest_color=no --gtest_filter='*ScoresRising*' &
tst varC mem compute-sanitizer --tool memcheck --error-exitcode 9 $X/test_fa3_forward --gtest_color=no --gtest_filter='*fused_r124_d128_bf16:*chain_r1248_d128_bf16' &
wait
for f in $O/t/*.log; do echo "$(basename $f .log): $(grep -E '^\[  (PASSED|FAILED) |ERROR SUMMARY|^rc=' $f | tr '\n' ' ')"; grep -E '^\[  FAILED|Failure' $f | head -6; done | tee -a $L
echo "A t=$(el)" | tee -a $L
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-150; }
bench() { local v=$1 tag=$2 f=$3; LD_LIBRARY_PATH=$(lib $v) DILATED_BENCH_MIN_TIME=1 timeout 60 $X/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_${v}_$tag.json --benchmark_out_format=json > $O/b_${v}_$tag.log 2>&1; row $O/b_${v}_$tag.log ${v}_$tag | tee -a $L; }
LN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for r in 1 2 3; do for v in main varA varC; do bench $v ln128_$r "$LN"; done; done
echo "B1 t=$(el)" | tee -a $L
for d in 64 256; do for r in 1 2; do for v in main varC; do bench $v ln${d}_$r "BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:$d/"; done; done; done
for v in main varC; do bench $v dense "BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/"; done
echo "B2 t=$(el)" | tee -a $L
LD_LIBRARY_PATH=$(lib varC) timeout 150 python3 $X/h100_fa3_peers.py --bench $X/bench_fa3 --out $O/peers.json "--bench-args=--benchmark_filter=$LN" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)" | tee -a $L; grep -E '^(case|longnet|  ref)' $O/peers.log | tee -a $L
for v in main varC; do bench $v ln128_4 "$LN"; done
echo "total $(el)s" | tee -a $L
cp $L $O/ && tar -czf $OUTD/run1.tar.gz -C /tmp run1
