#!/usr/bin/env bash
# Lead, 2026-11-27 (sixth session), final call: the final tree (LongNet chains, bs3 bench, fa3vote's legal rescale wait) on one H100.
# A. every cuda_fa3 unit-test binary whole, concurrently (+ forward/window at 3 CTAs), test_offload_fa3,
#    test_offload (Cuda), test_auto_plan; compute-sanitizer on the changed paths (LongNet chains, block-sparse)
#    incl. synccheck on main's and the new block-sparse causal path and on the dense causal kernel.
# B. (GPU alone) peers with the same timing protocol (h100_fa3_peers.py), LongNet d128 chain vs dup,
#    block-sparse ratios (sync and stream).
# Usage: driver.sh OUTDIR. Global budget ~420 s.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/final}; mkdir -p $O
D=/tmp/leadbin6; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D && cp $B/*.so* $B/*.py $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader > $O/gpu.txt; date -u >> $O/gpu.txt
compute-sanitizer --version | tail -1 >> $O/gpu.txt; python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' >> $O/gpu.txt 2>&1
cat $O/gpu.txt; cat $B/commit.txt | tee $O/commit.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_support test_fa3_numerics test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_auto_plan test_offload_fa3 test_offload; do
  bg ${t#test_} 170 $D/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fa3_forward_cta3 170 $D/test_fa3_forward; bg fa3_window_cta3 170 $D/test_fa3_window; wait )
( export DILATED_FA3_LONGNET=dup; bg fa3_forward_dup 170 $D/test_fa3_forward --gtest_filter='*longnet*:*chain*:*nested*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $D/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san racecheck chain_r124 100 test_fa3_forward '*chain_r124_partial_d64_bf16'
san memcheck chain 100 test_fa3_forward '*chain*d128*'
san synccheck bs_causal_tiny 100 test_fa3_forward '*/block_sparse_tiny_d128_causal_bf16'
san synccheck chain_r124 100 test_fa3_forward '*chain_r124_partial_d64_bf16'
san synccheck bwd_longnet 100 test_fa3_backward '*longnet_d128_bf16*'
san synccheck dense_causal 100 test_fa3_forward '*/dense_d128_causal_bf16'
san synccheck dense_d64_d256 100 test_fa3_forward '*/dense_d64_bf16:*/dense_d256_bf16:*/dense_d64_causal_bf16:*/dense_d256_causal_bf16'
san synccheck window_longnet 100 test_fa3_window '*longnet_d128_bf16*'
san racecheck dense_causal 100 test_fa3_forward '*/dense_d128_causal_bf16'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
echo "=== B. peers, same protocol (>= 1 s steady state for ours and the SDPA peers)"
timeout 150 python3 $D/h100_fa3_peers.py --bench $D/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/|BM_Fa3Backward/kind:[01]/" > $O/peers.log 2>&1
echo "peers rc=$? t=$(el)"; grep -E '^(case|dense|causal|longnet)' $O/peers.log
echo "=== LongNet 1M d128/d64 with every branch's keys (DILATED_FA3_LONGNET=dup), new binary"
DILATED_FA3_LONGNET=dup DILATED_BENCH_MIN_TIME=0.5 timeout 25 $D/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' > $O/ln_dup.log 2>&1
grep -E '^BM_' $O/ln_dup.log | sed -E 's/ +/ /g' | cut -c1-150
echo "=== block-sparse 90% (ratio = time / (dense time x density); sync and stream), final tree"
DILATED_BENCH_MIN_TIME=0.3 timeout 45 $D/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_out=$O/bs.json --benchmark_out_format=json > $O/bs.log 2>&1
python3 - $O/bs.json <<'PY'
import json, sys
for f, tag in zip(sys.argv[1:], ("final",)):
    try: bb = json.load(open(f))["benchmarks"]
    except Exception as e: print(tag, "no JSON", e); continue
    for b in bb:
        g = lambda k: b.get(k, float("nan"))
        print("%s %-40s sync %.4f ms ratio %.3f | stream %.4f ms ratio %.3f | dense %.3f ms | host %.1f us" % (tag,
              b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"), g("vs_dense_x_density"),
              g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms"), g("host_us")))
PY
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/final.tar.gz -C $P $(basename $O) && rm -rf $O
