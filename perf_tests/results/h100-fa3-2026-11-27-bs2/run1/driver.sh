#!/usr/bin/env bash
# fa3bs2 request 1 (one H100, <= 110 s wall, deadline 105 s): block-sparse
# forward tiles start from the plan's host-decoded TileEntry (b, h, q_begin)
# instead of decode_tile's 64-bit divisions (issue 4), branch h/fa3bs2.
# DILATED_FA3_BS=old = main's decode_tile in the same binary.
# DILATED_FA3_MAX_CTAS=3 caps the block-sparse schedule's CTAs (many tiles per CTA).
#   A. float64 tests + compute-sanitizer, concurrently
#   B. timing, GPU alone: BM_Fa3BlockSparseVsDense 16K old/new twice (alternating),
#      ncu kernel duration 16K old/new, causal 16K old/new, dense d128 16K, 64K new.
#   bash .deps/fa3bs2-run/driver.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bs2-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 105))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
B=/tmp/fa3bs2-bin; mkdir -p $B
tar -xJf "$H/bins.tar.xz" -C $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
summ() { echo "$1 rc=$(cat $2.rc 2>/dev/null) $(grep -E '^\[  (PASSED|FAILED) |tests? ran' $2 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $2 | sed 's/, where.*//' | sort -u | head -6; }
bg() {  # log, seconds, env/command...
  local log=$1 s=$2; shift 2
  ( timeout -k 3 $s env "$@" > $O/$log 2>&1; echo $? > $O/$log.rc ) &
}
echo "=== A. tests + sanitizers (concurrent)"
G=--gtest_color=no
BSF='*block_sparse*:*TileSchedule*'
bg bs0.log 33 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $B/test_fa3_block_sparse $G
bg bs1.log 33 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $B/test_fa3_block_sparse $G
bg fwd.log 33 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_ctas3.log 33 DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_old_ctas3.log 33 DILATED_FA3_BS=old DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg bs_ctas3.log 33 DILATED_FA3_MAX_CTAS=3 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $B/test_fa3_block_sparse $G
SAN='*/block_sparse_many_tiles_d128_bf16'
bg memcheck.log 33 DILATED_FA3_MAX_CTAS=3 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter="$SAN"
bg racecheck.log 33 DILATED_FA3_MAX_CTAS=3 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter="$SAN"
wait
for l in bs0 bs1 fwd fwd_ctas3 fwd_old_ctas3 bs_ctas3; do summ $l $O/$l.log; done
for t in memcheck racecheck; do echo "$t rc=$(cat $O/$t.log.rc) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$t.log | tail -n 1) $(grep -cE '^\[       OK' $O/$t.log) ok"; done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== B. timing (GPU alone)"
run_bench() {  # label, filter, min_time, env...
  local l=$1 f=$2 mt=$3; shift 3
  if [ $(left) -lt 6 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env DILATED_BENCH_MIN_TIME=$mt "$@" timeout $(lim 22) $B/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_$l.json > $O/b_$l.log 2>&1
  grep -E '^BM_' $O/b_$l.log | sed -E 's/\/min_time:[0-9.]+\/manual_time//; s/BM_Fa3//; s/heads:16\///' | awk -v l=$l '{o=l" "$1" "$2" "$3; for(i=4;i<=NF;i++) if ($i ~ /^(dense_ms|vs_dense_x_density|TFLOP)/ || $i ~ /ERROR/) o=o" "$i; print o}'
  echo "  ($(( $(date +%s) - T0 )) s)"
}
F16='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
F16C='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
F64='BM_Fa3BlockSparseVsDense/seq:65536/heads:16/dim:128/'
FD='BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/'
run_bench bs16_old_a "$F16" 0.3 DILATED_FA3_BS=old
run_bench bs16_new_a "$F16" 0.3
run_bench bs16_old_b "$F16" 0.3 DILATED_FA3_BS=old
run_bench bs16_new_b "$F16" 0.3
dur() {  # label, filter, env...
  local l=$1 f=$2; shift 2
  if [ $(left) -lt 8 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env DILATED_BENCH_MIN_TIME=0.05 "$@" timeout $(lim 14) ncu --clock-control none --kill yes -k regex:forward_kernel --launch-skip 1 --launch-count 4 \
    --metrics gpu__time_duration.sum $B/bench_fa3 --benchmark_filter="$f" > $O/dur_$l.log 2>&1
  echo "$l rc=$? $(awk '/forward_kernel/ {k = ($0 ~ /176/) ? "dense" : "bs"} /gpu__time_duration/ {printf "%s=%s ", k, $NF}' $O/dur_$l.log)"
}
echo "--- ncu kernel durations (us), 16K: launches 2-5 of forward_kernel (bs warm-up, then the loop: bs, dense, ...)"
dur bs16_old "$F16" DILATED_FA3_BS=old
dur bs16_new "$F16"
run_bench bs16c_old "$F16C" 0.3 DILATED_FA3_BS=old
run_bench bs16c_new "$F16C" 0.3
run_bench dense16 "$FD" 0.2
run_bench bs64_new "$F64" 0.25
echo "total elapsed $(( $(date +%s) - T0 )) s"
P=$(dirname $O); cd $P && tar -czf $P/fa3bs2.tar.gz --remove-files $(basename $O) && echo "packed $P/fa3bs2.tar.gz"
