#!/usr/bin/env bash
# Lead, 2026-11-28 (tenth session), issue 4, call 2: the fused LongNet chain absorbs r = 6 and 12
# (longnet_fused_chain.hpp fused_absorb_plan; DedupParams::exclude). Call 1 hung: a 32 / 240 register
# split of the kDedup kernels (65536 > the CTA's 64512) blocked the consumers' setmaxnreg.inc; reverted.
# A. correctness, one process per case (float64 reference), with timeouts; memcheck on a small case.
# B. LongNet 1M d128: DILATED_FA3_LONGNET=noabsorb vs default vs DILATED_FA3_ABSORB=all, alternating.
# C. the PyTorch LongNet reference in the same call (peers script).
B=$(cd "$(dirname "$0")" && pwd); OUTD=${1:-/tmp/out2}; mkdir -p $OUTD; O=/tmp/run2; mkdir -p $O
N=/tmp/s10new2; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
L=$OUTD/log.txt  # the summary, in $OUT as it grows (at most 8 files come back)
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/new_commit.txt; } > $L 2>&1
cat $L
# Smoke first: a small absorbed case must finish.
timeout 60 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb_r36_d128_bf16' > $O/smoke.log 2>&1; echo "smoke rc=$? t=$(el)" | tee -a $L
grep -E '^\[  (PASSED|FAILED) |max \|out' $O/smoke.log | head -3 | tee -a $L
mkdir -p $O/t
for c in absorb_paper_d128_bf16 absorb_paper_d128_fp16 absorb_paper_d64_bf16 absorb_paper_d256_bf16 absorb_r36_d128_fp16 fused_then_r6_d128_bf16 fused_then_r6_d128_fp16 fused_r124_d128_bf16 longnet5_d256_bf16 chain_r1248_d128_bf16 nested_then_r6_d64_bf16; do
  timeout 150 $N/test_fa3_forward --gtest_color=no --gtest_filter="*/$c" > $O/t/$c.log 2>&1 &
done
( export DILATED_FA3_MAX_CTAS=2; timeout 150 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb_r36_d128_bf16:*absorb_paper_d256_bf16' > $O/t/cta2.log 2>&1 ) &
timeout 150 $N/test_fa3_numerics --gtest_color=no --gtest_filter='*ScoresRising*' > $O/t/numerics.log 2>&1 &
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $N/test_fa3_forward --gtest_color=no --gtest_filter='*absorb_r36_d128_bf16' > $O/t/memcheck.log 2>&1 &
wait
for f in $O/t/*.log; do echo "$(basename $f .log): $(grep -E '^\[  (PASSED|FAILED) |ERROR SUMMARY' $f | tr '\n' ' ') $(grep -o 'max |out err| [^ ]*' $f | head -1)"; grep -E 'Failure|Expected|Which is' $f | head -4; done | tee -a $L
echo "A t=$(el)" | tee -a $L
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-150; }
bench() { DILATED_BENCH_MIN_TIME=1 timeout 60 $N/bench_fa3 --benchmark_filter="$2" --benchmark_out=$O/b_$1.json --benchmark_out_format=json > $O/b_$1.log 2>&1; row $O/b_$1.log $1 | tee -a $L; }
LN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for r in 1 2; do
  DILATED_FA3_LONGNET=noabsorb bench noabsorb_$r "$LN"
  bench absorb_$r "$LN"
  DILATED_FA3_ABSORB=all bench absorball_$r "$LN"
done
echo "B t=$(el)" | tee -a $L
timeout 150 python3 $N/h100_fa3_peers.py --bench $N/bench_fa3 --out $O/peers.json "--bench-args=--benchmark_filter=$LN" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)" | tee -a $L; grep -E '^(case|longnet|  ref)' $O/peers.log | tee -a $L
DILATED_FA3_LONGNET=noabsorb bench noabsorb_3 "$LN"; bench absorb_3 "$LN"
for d in 64 256; do DILATED_FA3_LONGNET=noabsorb bench d${d}_noabsorb "BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:$d/"; bench d${d}_absorb "BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:$d/"; done
echo "total $(el)s" | tee -a $L
cp $L $O/ && tar -czf $OUTD/run2.tar.gz -C /tmp run2
