#!/usr/bin/env bash
# fa3bs3 request 3 (lead-approved, one H100, <= 90 s wall, deadline 85 s), branch h/fa3bs3:
#  request 2's cross-tile S overlap (C) was 6.8% slower: its S(0) waits, inside the turn, for the next
#  tile's Q, which the producer loads only after the tile's last K/V block. Now the producer loads the
#  next tile's Q after the tile's second K/V block (ForwardParams::early_q).
# Variants in one binary: A = main's kernel path (DILATED_FA3_BS_TURN=old DILATED_FA3_BS_EARLY_Q=off),
#  E = default (turn carry + early Q), F = E + overlap (DILATED_FA3_BS_OVERLAP=on).
#   bash .deps/fa3bs3-run/driver.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bs3-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 85))
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
VF="DILATED_FA3_BS_OVERLAP=on"
bg bs0.log 30 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $B/test_fa3_block_sparse $G
bg bs1.log 30 DILATED_FA3_MAX_CTAS=3 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $B/test_fa3_block_sparse $G
bg fwd.log 30 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_ctas3.log 30 DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter="$BSF"
bg fwd_ctas1.log 30 DILATED_FA3_MAX_CTAS=1 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg fwd_F_ctas3.log 30 $VF DILATED_FA3_MAX_CTAS=3 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg fwd_F_ctas1.log 30 $VF DILATED_FA3_MAX_CTAS=1 $B/test_fa3_forward $G --gtest_filter='*block_sparse*'
bg memcheck.log 30 DILATED_FA3_MAX_CTAS=3 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_many_tiles_d128_bf16'
bg racecheck.log 30 DILATED_FA3_MAX_CTAS=1 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_tiny_d128_bf16'
bg synccheck.log 30 DILATED_FA3_MAX_CTAS=1 compute-sanitizer --tool synccheck --error-exitcode 9 $B/test_fa3_forward $G --gtest_filter='*/block_sparse_tiny_d128_causal_bf16'
wait
for l in bs0 bs1 fwd fwd_ctas3 fwd_ctas1 fwd_F_ctas3 fwd_F_ctas1; do summ $l $O/$l.log; done
for t in memcheck racecheck synccheck; do echo "$t rc=$(cat $O/$t.log.rc) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$t.log | tail -n 1) $(grep -cE '^\[       OK' $O/$t.log) ok"; done
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
VA="DILATED_FA3_BS_TURN=old DILATED_FA3_BS_EARLY_Q=off"; VE="DILATED_FA3_NEW=1"
run_bench A_16_a "$F16" 0.2 $VA
run_bench E_16_a "$F16" 0.2 $VE
run_bench F_16_a "$F16" 0.2 $VF
run_bench A_16_b "$F16" 0.2 $VA
run_bench E_16_b "$F16" 0.2 $VE
run_bench F_16_b "$F16" 0.2 $VF
run_bench A_16c "$F16C" 0.2 $VA
run_bench E_16c "$F16C" 0.2 $VE
run_bench A_64 "$F64" 0.15 $VA
run_bench E_64 "$F64" 0.15 $VE
dur() {  # label, filter, env...
  local l=$1 f=$2; shift 2
  if [ $(left) -lt 8 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env DILATED_BENCH_MIN_TIME=0.05 "$@" timeout $(lim 12) ncu --clock-control none --kill yes -k regex:forward_kernel --launch-skip 1 --launch-count 2 \
    --metrics gpu__time_duration.sum $B/bench_fa3 --benchmark_filter="$f" > $O/dur_$l.log 2>&1
  echo "$l rc=$? $(awk '/forward_kernel/ {k = ($0 ~ /176/) ? "dense" : "bs"} /gpu__time_duration/ {printf "%s=%s ", k, $NF}' $O/dur_$l.log)"
}
echo "--- ncu kernel durations (bs us), 16K: launches 2-3 of forward_kernel"
dur A_16 "$F16" $VA
dur E_16 "$F16" $VE
dur F_16 "$F16" $VF
echo "total elapsed $(( $(date +%s) - T0 )) s"
P=$(dirname $O); cd $P && tar -czf $P/fa3bs3.tar.gz --remove-files $(basename $O) && echo "packed $P/fa3bs3.tar.gz"
