#!/usr/bin/env bash
# fa3epi request 2 (one H100, <= 150 s): verification and timing of the cuda_fa3
# forward epilogue (issue 4), h/fa3epi. DILATED_FA3_EPILOGUE=old = main's epilogue
# in the same binary. DILATED_FA3_MAX_CTAS=n caps the persistent grid (testing:
# many tiles per CTA in small problems).
#   A. float64 tests and compute-sanitizer, concurrently (host-bound references)
#   B. timing, GPU alone: block-sparse 90% ratios (16K, 16K causal, 64K), old/new;
#      cuDNN / FA2 / LongNet reference peers in the same call (h100_fa3_peers.py);
#      LongNet per-branch kernel durations old/new (ncu, one metric)
#   bash .deps/fa3epi-run/driver2.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3epi-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 143))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
B=/tmp/fa3epi-bin; mkdir -p $B
tar -xJf "$H/bins.tar.xz" -C $B || echo "UNPACK FAILED"
cp "$H/h100_fa3_peers.py" "$H/cpu_peers.py" $B/
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
summ() { echo "$1 rc=$(cat $2.rc 2>/dev/null) $(grep -E '^\[  (PASSED|FAILED) |tests? ran' $2 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $2 | sed 's/, where.*//' | sort -u | head -6; }
bg() {  # log, seconds, env/command...
  local log=$1 s=$2; shift 2
  ( timeout -k 5 $s env "$@" > $O/$log 2>&1; echo $? > $O/$log.rc ) &
}
echo "=== A. tests + sanitizers (concurrent)"
G=--gtest_color=no
FWD_MULTI='*longnet*:*w_mod_r*:*nested*:*unkept*:*head_groups*:*partial*:*r16*:*dense_d64_bf16:*dense_d128_bf16:*dense_d256_fp16:*dropout_longnet_d128_bf16:*block_sparse_random90_d128_bf16:*block_sparse_dilated_d64_fp16'
bg fwd0.log 50 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $B/test_fa3_forward $G --gtest_filter='-*wide_blocks*'
bg fwd1.log 50 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $B/test_fa3_forward $G --gtest_filter='-*wide_blocks*'
bg fwd_ctas5.log 50 DILATED_FA3_MAX_CTAS=5 $B/test_fa3_forward $G --gtest_filter="$FWD_MULTI"
bg fwd_old.log 50 DILATED_FA3_EPILOGUE=old DILATED_FA3_MAX_CTAS=5 $B/test_fa3_forward $G --gtest_filter='*longnet_d128*:*w_mod_r_d64_bf16'
bg fwd_nodefer.log 50 DILATED_FA3_EPILOGUE=nodefer DILATED_FA3_MAX_CTAS=5 $B/test_fa3_forward $G --gtest_filter="$FWD_MULTI:*block_sparse_many_tiles_d128_bf16"
bg win_nodefer.log 50 DILATED_FA3_EPILOGUE=nodefer GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=1 $B/test_fa3_window $G
for i in 0 1 2; do bg win$i.log 50 GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i $B/test_fa3_window $G; done
bg win_ctas3.log 50 DILATED_FA3_MAX_CTAS=3 $B/test_fa3_window $G --gtest_filter='*longnet_d128_bf16:*aligned_mixed_d128_bf16:*w_mod_r_d64_bf16:*dense_d64_bf16'
for i in 0 1; do bg num$i.log 50 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i $B/test_fa3_window_numerics $G; done
SAN='*/longnet_d128_bf16:*/block_sparse_many_tiles_d128_bf16:*/w_mod_r_d64_fp16'
bg memcheck.log 50 DILATED_FA3_MAX_CTAS=4 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter="$SAN"
bg racecheck.log 50 DILATED_FA3_MAX_CTAS=4 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/longnet_d128_bf16:*/w_mod_r_d64_fp16'
bg racecheck_bs.log 50 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_many_tiles_d128_bf16'
wait
for l in fwd0 fwd1 fwd_ctas5 fwd_old fwd_nodefer win0 win1 win2 win_ctas3 win_nodefer num0 num1; do summ $l $O/$l.log; done
for t in memcheck racecheck racecheck_bs; do echo "$t rc=$(cat $O/$t.log.rc) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$t.log | tail -n 1) $(grep -cE '^\[       OK' $O/$t.log) ok"; done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== B. timing (GPU alone)"
run_bench() {  # label, filter, env...
  local l=$1 f=$2; shift 2
  if [ $(left) -lt 8 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env "$@" timeout $(lim 25) $B/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_$l.json > $O/b_$l.log 2>&1
  grep -E '^BM_' $O/b_$l.log | sed -E 's/\/min_time:[0-9.]+\/manual_time//; s/BM_Fa3//; s/heads:16\///' | awk -v l=$l '{o=l" "$1" "$2" "$3; for(i=4;i<=NF;i++) if ($i ~ /^(dense_ms|vs_dense_x_density|TFLOP)/ || $i ~ /ERROR/) o=o" "$i; print o}'
}
F16='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
F16C='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
F64='BM_Fa3BlockSparseVsDense/seq:65536/heads:16/dim:128/'
FLN='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
run_bench bs16_old "$F16" DILATED_FA3_EPILOGUE=old
run_bench bs16_new "$F16"
echo "--- peers (same call): dense d128 16K, LongNet 1M d128 (new default)"
if [ $(left) -gt 40 ]; then
  timeout $(lim 45) python3 $B/h100_fa3_peers.py --bench $B/bench_fa3 --out $O/peers.json \
    "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:(0|2)/batch:1/seq:[0-9]+/heads:16/dim:128/" > $O/peers.log 2>&1
  echo "peers rc=$?"; grep -E '^(dense|longnet|case)' $O/peers.log | tail -n 4
else echo "peers SKIPPED (deadline)"; fi
run_bench ln_old "$FLN" DILATED_FA3_EPILOGUE=old
run_bench bs64_new "$F64"
dur() {  # label, filter, skip, count, epilogue variant
  if [ $(left) -lt 10 ]; then echo "$1 SKIPPED (deadline)"; return; fi
  DILATED_FA3_EPILOGUE=$5 timeout $(lim 14) ncu --clock-control none --kill yes -k regex:forward_kernel --launch-skip $3 --launch-count $4 \
    --metrics gpu__time_duration.sum $B/bench_fa3 --benchmark_filter="$2" > $O/dur_$1.log 2>&1
  echo "$1 rc=$? $(grep -E 'gpu__time_duration' $O/dur_$1.log | awk '{printf "%s ", $NF}')"
}
echo "--- kernel durations (ncu --clock-control none, one metric): block-sparse 16K (us); LongNet 1M d128 branches 0-4 (ms)"
for v in old new nodefer noturn; do dur bs16_$v "$F16" 1 1 $v; done
for v in old new nodefer narrow; do dur ln_$v "$FLN" 0 5 $v; done
run_bench bs16c_new "$F16C"
run_bench bs64_old "$F64" DILATED_FA3_EPILOGUE=old
echo "total elapsed $(( $(date +%s) - T0 )) s"
P=$(dirname $O); cd $P && tar -czf $P/fa3epi2.tar.gz --remove-files $(basename $O) && echo "packed $P/fa3epi2.tar.gz"
