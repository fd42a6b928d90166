#!/usr/bin/env bash
# Lead, 2026-11-28 (eleventh session), issue 4, call 2: the final tree (main 2ae3a5b + docs: the hot loop
# of the lazy softmax's common case) on one H100. Same executables, the library of main before the hot
# loop (2cce6e7) as `old/`, of the final tree as `new/`.
# A. every cuda_fa3 unit-test binary whole, concurrently (+ forward/window at 3 CTAs, LongNet=dup),
#    test_offload_fa3; compute-sanitizer on the hot-loop kernels (fused and kDedup d128 chains).
# B. (GPU alone) peers, same protocol (h100_fa3_peers.py): dense/causal 16K, backward, LongNet 1M d128.
# C. LongNet 1M old / new alternating (d128), new d64 / d256; block-sparse ratios.
B=$(cd "$(dirname "$0")" && pwd); OUTD=${1:-/tmp/out2}; mkdir -p $OUTD; O=/tmp/run2; mkdir -p $O
N=/tmp/s11b; mkdir -p $N; tar -xJf $B/final.tar.xz -C $N && cp $B/*.so* $B/*.py $N/bin/
export PATH=/usr/local/cuda/bin:$PATH
X=$N/bin; export LD_LIBRARY_PATH=$N/new:$X:/usr/local/cuda/lib64
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
L=$OUTD/log.txt
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
  compute-sanitizer --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1; cat $B/final_commit.txt; } > $L 2>&1
cat $L
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_support test_fa3_numerics test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_offload_fa3; do
  bg ${t#test_} 200 $X/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fa3_forward_cta3 200 $X/test_fa3_forward; bg fa3_window_cta3 200 $X/test_fa3_window; wait )
( export DILATED_FA3_LONGNET=dup; bg fa3_forward_dup 200 $X/test_fa3_forward --gtest_filter='*longnet*:*chain*:*nested*:*fused*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $X/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1)" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san synccheck chains_d128 150 test_fa3_forward '*fused_r124_d128_*:*chain_r1248_d128_*:*chain_r248_d128_*:*fused_then_r6_d128_*:*longnet_d128_*'
san racecheck chains_d128 150 test_fa3_forward '*fused_r124_d128_bf16:*chain_r1248_d128_bf16'
san memcheck chains_d128 150 test_fa3_forward '*fused_then_r6_d128_*:*chain_r248_d128_*'
san synccheck dense_causal 150 test_fa3_forward '*/dense_d128_causal_bf16:*/dense_d64_bf16'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)" | tee -a $L
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done | tee -a $L
echo "=== B. peers" | tee -a $L
timeout 200 python3 $X/h100_fa3_peers.py --bench $X/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:[01]/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)" | tee -a $L; grep -E '^(case|dense|causal|longnet|  ref)' $O/peers.log | tee -a $L
echo "=== C. LongNet 1M" | tee -a $L
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3Forward\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-150; }
bench() { local v=$1 tag=$2 f=$3; LD_LIBRARY_PATH=$N/$v:$X:/usr/local/cuda/lib64 DILATED_BENCH_MIN_TIME=1 timeout 60 $X/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_${v}_$tag.json --benchmark_out_format=json > $O/b_${v}_$tag.log 2>&1; row $O/b_${v}_$tag.log ${v}_$tag | tee -a $L; }
LN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for r in 1 2; do bench old ln128_$r "$LN"; bench new ln128_$r "$LN"; done
for d in 64 256; do bench new ln$d "BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:$d/"; done
echo "=== block-sparse 90%" | tee -a $L
DILATED_BENCH_MIN_TIME=0.3 timeout 60 $X/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_out=$O/bs.json --benchmark_out_format=json > $O/bs.log 2>&1
python3 - $O/bs.json <<'PY' | tee -a $L
import json, sys
try: bb = json.load(open(sys.argv[1]))["benchmarks"]
except Exception as e: print("no JSON", e); bb = []
for b in bb:
    g = lambda k: b.get(k, float("nan"))
    print("%-40s sync %.4f ms ratio %.3f | stream %.4f ms ratio %.3f | dense %.3f ms" % (
          b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"), g("vs_dense_x_density"),
          g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms")))
PY
echo "total $(el)s" | tee -a $L
cp $L $O/ && tar -czf $OUTD/run2.tar.gz -C /tmp run2
