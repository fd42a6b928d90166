#!/usr/bin/env bash
# Lead, 2026-11-27 (seventh session): block-sparse fill list + vectorized fill, and scheduled block-sparse
# consumers reading their tile entries from shared memory (published by the producer) without walking runs.
# A. every cuda_fa3 test binary (new build), concurrently; block-sparse at 3 CTAs and with DILATED_FA3_BS=old;
#    compute-sanitizer synccheck/racecheck/memcheck on the small block-sparse cases.
# B. (GPU alone) block-sparse ratios, main (850073e, bins.tar.xz) vs new (new.tar.xz), alternating, two rounds;
#    ncu durations of the causal case's kernels (fill + forward) in both.
# Usage: run2.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run2}; mkdir -p $O
M=/tmp/s7main; N=/tmp/s7new; mkdir -p $M $N
tar -xJf $B/bins.tar.xz -C $M ./bench_fa3 && tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $M/ && cp $B/*.so* $N/
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; compute-sanitizer --version | tail -1; cat $B/new_commit.txt; } | tee $O/machine.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in test_fa3_forward test_fa3_backward test_fa3_support test_fa3_numerics test_fa3_block_sparse test_fa3_window test_fa3_window_numerics test_auto_plan test_offload_fa3; do
  bg ${t#test_} 200 $N/$t; done
( export DILATED_FA3_MAX_CTAS=3; bg fwd_bs_cta3 150 $N/test_fa3_forward --gtest_filter='*block_sparse*'; wait )
( export DILATED_FA3_BS=old; bg fwd_bs_old 150 $N/test_fa3_forward --gtest_filter='*block_sparse*'; wait )
( export DILATED_FA3_BLOCK_SPARSE_Q=1; bg fwd_bs_q1 150 $N/test_fa3_forward --gtest_filter='*block_sparse*'; wait )
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  ( timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $N/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')" > $O/$tool-$name.rc ) & }
export DILATED_FA3_MAX_CTAS=2
san synccheck bs_tiny 150 test_fa3_forward '*/block_sparse_tiny_d128_bf16:*/block_sparse_tiny_d128_causal_bf16'
san racecheck bs_tiny 150 test_fa3_forward '*/block_sparse_tiny_d128_bf16:*/block_sparse_tiny_d128_causal_bf16'
san memcheck bs_ragged 150 test_fa3_forward '*/block_sparse_ragged_d128_causal_bf16:*/block_sparse_ragged_d64_bf16:*/block_sparse_random90_d128_causal_fp16'
san memcheck fill_dilated 150 test_fa3_forward '*/unkept_rows_d128_bf16:*/w_mod_r_d64_causal_bf16'
unset DILATED_FA3_MAX_CTAS
wait; echo "A done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log 2>/dev/null | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log 2>/dev/null | sed 's/, where.*//' | sort -u | head -8; done
echo "=== B. block-sparse 90%: main (850073e) vs new, alternating (sync ratio | stream ratio)"
summ() { python3 - "$1" "$2" <<'PY'
import json, sys
try: bb = json.load(open(sys.argv[1]))["benchmarks"]
except Exception as e: print(sys.argv[2], "no JSON", e); sys.exit()
for b in bb:
    g = lambda k: b.get(k, float("nan"))
    print("%-8s %-28s sync %.4f ms %.3f | stream %.4f ms %.3f | dense %.3f | host %.1f us" % (sys.argv[2],
        b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"), g("vs_dense_x_density"),
        g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms"), g("host_us")))
PY
}
for r in 1 2; do for v in main new; do D=$([ $v = main ] && echo $M || echo $N)
  LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64 DILATED_BENCH_MIN_TIME=0.2 timeout 60 $D/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_out=$O/bs_${v}_$r.json --benchmark_out_format=json > $O/bs_${v}_$r.log 2>&1
  summ $O/bs_${v}_$r.json ${v}_$r; done; echo "t=$(el)"; done
echo "=== ncu durations, causal 16K (dense warm-up, then fill + block-sparse forward)"
for v in main new; do D=$([ $v = main ] && echo $M || echo $N)
  LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64 DILATED_BENCH_MIN_TIME=0.01 timeout 60 ncu --clock-control none -k regex:"fill_empty|forward_kernel" --launch-count 5 --metrics gpu__time_duration.sum $D/bench_fa3 --benchmark_filter='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1' > $O/ncu_dur_$v.log 2>&1
  echo "-- $v"; grep -E "fill_empty|forward_kernel|gpu__time_duration" $O/ncu_dur_$v.log | sed -E 's/dilated::cuda_fa3::details:://g; s/\(dilated.*//; s/ +/ /g' | head -10
done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run2.tar.gz -C $P $(basename $O) && rm -rf $O
