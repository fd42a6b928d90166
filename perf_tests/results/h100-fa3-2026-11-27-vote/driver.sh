#!/usr/bin/env bash
# fa3vote request 1 (one H100, <= 150 s wall, global deadline 145 s), branch h/fa3vote (from main 3ece86b).
# The consumer's rescale branch around wgmma.wait_group: main waits in both arms of a per-warp
# __any_sync branch (illegal for .aligned: warps of a warpgroup may take different wait PCs).
# Variants (bench/test binaries built from h/fa3vote with forward_kernel.cuh's FA3VOTE_V):
#   main = FA3VOTE_V 0 (3ece86b's code), v1 = bar.red.or vote over the warpgroup's 128 threads + __any_sync of
#   its result (ptxas then keeps the loop's uniform datapath; 9371cba lacked it), v2 = per-warp need, ONE join:
#   the wait sits in both arms of a branch on kb's parity (warpgroup-uniform) that only ends the softmax's
#   block, then if (need) rescale, v3 = v2's join with an unconditional rescale (FA3's order).
# A. concurrently: synccheck (v2 test binary; main's as the control), test_fa3_forward (v2) in 6 shards.
# B. GPU alone: BM_Fa3Forward dense/causal d64/d128/d256 16K + LongNet 1M d128, 2 rounds alternating.
#   bash .deps/fa3vote-run/driver.sh OUT
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3vote-out}; mkdir -p "$O"
T0=$(date +%s); END=$((T0 + 145))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
B=/tmp/fa3vote-bin; mkdir -p $B
tar -xJf "$H/bins.tar.xz" -C $B || echo "UNPACK FAILED"
cp "$H"/*.so* $B/ 2>/dev/null
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader; compute-sanitizer --version | tail -n 1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"; echo "unpacked t=$(( $(date +%s) - T0 ))s"
G=--gtest_color=no
bg() {  # log, seconds, env/command...
  local log=$1 s=$2; shift 2
  ( st=$(date +%s); timeout -k 3 $s env "$@" > $O/$log 2>&1; echo "$? $(( $(date +%s) - st ))s" > $O/$log.rc ) &
}
echo "=== A. synccheck + test_fa3_forward (v2), concurrent"
SC="compute-sanitizer --tool synccheck --error-exitcode 9"
bg sync_v2_dense_causal.log 50 DILATED_FA3_MAX_CTAS=2 $SC $B/test_fa3_forward_v2 $G --gtest_filter='*/dense_d128_causal_bf16'
bg sync_v2_bs_tiny_causal.log 50 DILATED_FA3_MAX_CTAS=2 $SC $B/test_fa3_forward_v2 $G --gtest_filter='*/block_sparse_tiny_d128_causal_bf16'
bg sync_v2_bs_tiny_causal_cta1.log 50 DILATED_FA3_MAX_CTAS=1 $SC $B/test_fa3_forward_v2 $G --gtest_filter='*/block_sparse_tiny_d128_causal_bf16'
bg sync_v2_chain_r124.log 50 DILATED_FA3_MAX_CTAS=2 $SC $B/test_fa3_forward_v2 $G --gtest_filter='*chain_r124_partial_d64_bf16'
bg sync_main_dense_causal.log 50 DILATED_FA3_MAX_CTAS=2 $SC $B/test_fa3_forward_main $G --gtest_filter='*/dense_d128_causal_bf16'
bg sync_main_bs_tiny_causal_cta1.log 50 DILATED_FA3_MAX_CTAS=1 $SC $B/test_fa3_forward_main $G --gtest_filter='*/block_sparse_tiny_d128_causal_bf16'
for i in 0 1 2 3 4 5; do bg fwd_v2_s$i.log 55 GTEST_TOTAL_SHARDS=6 GTEST_SHARD_INDEX=$i $B/test_fa3_forward_v2 $G; done
wait
for i in 0 1 2 3 4 5; do l=$O/fwd_v2_s$i.log
  echo "fwd_v2_s$i rc=$(cat $l.rc) $(grep -E '^\[  (PASSED|FAILED) |tests? ran' $l | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $l | sed 's/, where.*//' | sort -u | head -6; done
for l in $O/sync_*.log; do echo "$(basename $l .log) rc=$(cat $l.rc) $(grep -E 'ERROR SUMMARY' $l | tail -n 1) $(grep -m1 -E 'Mismatching|error detected' $l) ok=$(grep -cE '^\[       OK' $l)"; done
echo "elapsed $(( $(date +%s) - T0 )) s"

echo "=== B. timing (GPU alone), alternating"
F='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/|BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
run_bench() {  # variant, round
  local v=$1 r=$2
  if [ $(left) -lt 13 ]; then echo "$v/$r SKIPPED (deadline)"; return; fi
  DILATED_BENCH_MIN_TIME=0.5 timeout $(lim 25) $B/bench_fa3_$v --benchmark_filter="$F" --benchmark_out=$O/b_${v}_$r.json > $O/b_${v}_$r.log 2>&1
  grep -E '^BM_' $O/b_${v}_$r.log | sed -E 's/ +/ /g; s/BM_Fa3Forward.//; s/batch:1.seq://; s/.min_time:0.500.manual_time//' | awk -v t="$v/$r" '{print t, $1, $2, $3, $7}'
}
for v in main v2 v1 v3; do run_bench $v 1; done
for v in v2 main v3 v1; do run_bench $v 2; done
echo "elapsed $(( $(date +%s) - T0 )) s"
cd $O && tar -czf $O/all.tar.gz --remove-files $(ls | grep -v '^all.tar.gz$')
