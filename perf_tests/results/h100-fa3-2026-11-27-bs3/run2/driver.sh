#!/usr/bin/env bash
# fa3bs3 request 2 (one H100, <= 150 s wall, deadline 140 s), branch h/fa3bs3:
#  block-sparse consumers (1) carry the turn across tiles (warpgroup 0 starts a
#  tile during warpgroup 1's epilogue) and (2) issue the next tile's first S in
#  the last P V's turn, so it runs during the epilogue (ForwardParams::overlap_tiles).
# Variants in one binary: A = DILATED_FA3_BS_TURN=old (main's kernel path),
#  B = DILATED_FA3_BS_OVERLAP=off (turn carry only, request 1's new), C = default (both).
# bench: sync = events around one synchronized call (vs_dense_x_density, unchanged),
#  stream = back-to-back batches between one event pair (stream_*), host_us = plan.forward host time.
#   A. float64 tests + compute-sanitizer (filtered to block-sparse), concurrently
#   B. timing, GPU alone
#   bash .deps/fa3bs3-run/driver.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bs3-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 140))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
B=/tmp/fa3bs3-bin; mkdir -p $B
tar -xJf "$H/bins.tar.xz" -C $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
summ() { echo "$1 rc=$(cat $2.rc 2>/dev/null) $(grep -E '^\[  (PASSED|FAILED) |tests? ran' $2 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $2 | sed 's/, where.*//' | sort -u | head -6; }
bg() {  # log, seconds, env/command...
  local log=$1 s=$2; shift 2
  ( timeout -k 3 $s env "$@" > $O/$log 2>&1; echo $? > $O/$log.rc ) &
}
echo "=== A. tests + sanitizers (concurrent)"
G=--gtest_color=no
BSF='*block_sparse*:*TileSchedule*:*PlanReuse*'
bg bs0.log 40 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $B/test_fa3_block_sparse $G
bg bs1.log 40 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $B/test_fa3_block_sparse $G
bg bs_ctas3.log 40 DILATED_FA3_MAX_CTAS=3 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $B/test_fa3_block_sparse $G
bg fwd.log 40 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_ctas3.log 40 DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_ctas1.log 40 DILATED_FA3_MAX_CTAS=1 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg fwd_B_ctas3.log 40 DILATED_FA3_BS_OVERLAP=off DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg fwd_A_ctas3.log 40 DILATED_FA3_BS_TURN=old DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg memcheck.log 40 DILATED_FA3_MAX_CTAS=3 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_many_tiles_d128_bf16'
bg racecheck.log 45 DILATED_FA3_MAX_CTAS=1 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_tiny_d128_bf16'
bg racecheck_c.log 45 DILATED_FA3_MAX_CTAS=1 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_tiny_d128_causal_fp16'
bg synccheck.log 40 DILATED_FA3_MAX_CTAS=1 compute-sanitizer --tool synccheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_tiny_d128_bf16'
wait
for l in bs0 bs1 bs_ctas3 fwd fwd_ctas3 fwd_ctas1 fwd_B_ctas3 fwd_A_ctas3; do summ $l $O/$l.log; done
for t in memcheck racecheck racecheck_c synccheck; do echo "$t rc=$(cat $O/$t.log.rc) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$t.log | tail -n 1) $(grep -cE '^\[       OK' $O/$t.log) ok"; done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== B. timing (GPU alone); sync = events around one synchronized call, stream = back-to-back batches"
run_bench() {  # label, filter, min_time, env...
  local l=$1 f=$2 mt=$3; shift 3
  if [ $(left) -lt 8 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env DILATED_BENCH_MIN_TIME=$mt "$@" timeout $(lim 20) $B/bench_fa3 --benchmark_filter="$f" --benchmark_out=$O/b_$l.json > $O/b_$l.log 2>&1
  python3 - $O/b_$l.json $l <<'PY' || echo "$l: no JSON"
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    g = lambda k: b.get(k, float("nan"))
    print("%-10s %-34s sync %.4f ms ratio %.3f | stream %.4f ms ratio %.3f | dense sync %.3f stream %.3f ms | host %.1f us (dense %.1f) it %d %s" % (
        sys.argv[2], b["name"].replace("BM_Fa3BlockSparseVsDense/", "").split("/min_time")[0], g("real_time"),
        g("vs_dense_x_density"), g("stream_ms"), g("stream_vs_dense_x_density"), g("dense_ms"), g("stream_dense_ms"),
        g("host_us"), g("host_dense_us"), b.get("iterations", 0), b.get("error_message", "")))
PY
}
F16='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
F16C='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
F64='BM_Fa3BlockSparseVsDense/seq:65536/heads:16/dim:128/'
VA="DILATED_FA3_BS_TURN=old"; VB="DILATED_FA3_BS_OVERLAP=off"; VC="DILATED_FA3_NEW=1"
run_bench A_16_a "$F16" 0.3 $VA
run_bench B_16_a "$F16" 0.3 $VB
run_bench C_16_a "$F16" 0.3 $VC
run_bench A_16_b "$F16" 0.3 $VA
run_bench B_16_b "$F16" 0.3 $VB
run_bench C_16_b "$F16" 0.3 $VC
run_bench A_16c "$F16C" 0.3 $VA
run_bench C_16c "$F16C" 0.3 $VC
run_bench A_64 "$F64" 0.25 $VA
run_bench C_64 "$F64" 0.25 $VC
dur() {  # label, filter, env...
  local l=$1 f=$2; shift 2
  if [ $(left) -lt 10 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env DILATED_BENCH_MIN_TIME=0.05 "$@" timeout $(lim 15) ncu --clock-control none --kill yes -k regex:forward_kernel --launch-skip 1 --launch-count 4 \
    --metrics gpu__time_duration.sum $B/bench_fa3 --benchmark_filter="$f" > $O/dur_$l.log 2>&1
  echo "$l rc=$? $(awk '/forward_kernel/ {k = ($0 ~ /176/) ? "dense" : "bs"} /gpu__time_duration/ {printf "%s=%s ", k, $NF}' $O/dur_$l.log)"
}
echo "--- ncu kernel durations (bs us, dense ms), 16K: launches 2-5 of forward_kernel"
dur A_16 "$F16" $VA
dur B_16 "$F16" $VB
dur C_16 "$F16" $VC
echo "total elapsed $(( $(date +%s) - T0 )) s"
P=$(dirname $O); cd $P && tar -czf $P/fa3bs3.tar.gz --remove-files $(basename $O) && echo "packed $P/fa3bs3.tar.gz"
