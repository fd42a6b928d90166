#!/usr/bin/env bash
# fa3bs request 1 (2026-11-27): cuda_fa3 block-sparse forward - balanced
# per-CTA tile schedule from the plan (tile_schedule.hpp), causal persistent,
# next tile's Q in a second buffer, schedule entries prefetched. Old binary
# (HEAD e4e3a50) vs new in the same call; tests vs float64; sanitizers.
T0=$(date +%s); DEADLINE=$((T0 + 145))
left() { echo $((DEADLINE - $(date +%s))); }
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bs-out}; mkdir -p $O
B=/tmp/fa3bs-bin; mkdir -p $B
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $H/bins.tar.xz $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $3 | sed 's/, where.*//' | sort -u | head -6; }
step() {  # name, seconds wanted, command...
  local n=$1 s=$2; shift 2
  local l=$(left); if [ $l -lt 8 ]; then echo "$n SKIPPED (deadline)"; return 1; fi
  [ $s -gt $l ] && s=$l
  stdbuf -oL timeout $s "$@"
}
echo "== tests (float64 reference, NaN-poisoned outputs)"
step fwd 40 $B/test_fa3_forward --gtest_color=no --gtest_filter='-*wide_blocks*' > $O/test_fa3_forward.log 2>&1; summ test_fa3_forward $? $O/test_fa3_forward.log
echo "== block-sparse 90% vs dense x density (bf16, 16 heads): old (e4e3a50), new"
bs() {  # label, binary, filter, env...
  local l=$1 b=$2 f=$3; shift 3
  env "$@" timeout $(( $(left) > 5 ? $(left) : 5 )) $B/$b --benchmark_filter="$f" --benchmark_out=$O/bs_$l.json > $O/bs_$l.log 2>&1
  grep -E '^BM_' $O/bs_$l.log | sed -E 's/\/min_time:[0-9.]+\/manual_time//; s/BM_Fa3BlockSparseVsDense\///; s/heads:16\///' | awk -v l=$l '{o=l" "$1" "$2" "$3; for(i=4;i<=NF;i++) if ($i ~ /^(dense_ms|vs_dense_x_density)=/ || $i ~ /ERROR/) o=o" "$i; print o}'
}
F='BM_Fa3BlockSparseVsDense/seq:(16384|65536)/heads:16/dim:128/'
bs old bench_fa3_old "$F"
bs new bench_fa3 "$F"
echo "== compute-sanitizer (small block-sparse cases)"
step memcheck 25 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*block_sparse_many_tiles_d128_bf16:*block_sparse_many_tiles_d128_causal_fp16:*block_sparse_random90_d128_bf16' > $O/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/memcheck.log) ok"
step racecheck 20 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*block_sparse_local_d128_bf16' > $O/racecheck.log 2>&1
echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $O/racecheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/racecheck.log) ok"
echo "== variants of the new binary, 16K non-causal (stride = the grid before the schedule; Q1 = one Q buffer)"
F16='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
[ $(left) -gt 30 ] && bs new_stride bench_fa3 "$F16" DILATED_FA3_BLOCK_SPARSE_GRID=stride
[ $(left) -gt 20 ] && bs new_q1 bench_fa3 "$F16" DILATED_FA3_BLOCK_SPARSE_Q=1
echo "== block-sparse backward (plan changes) and a few windowed cases"
step bsbwd 30 $B/test_fa3_block_sparse --gtest_color=no > $O/test_fa3_block_sparse.log 2>&1; summ test_fa3_block_sparse $? $O/test_fa3_block_sparse.log
step window 15 $B/test_fa3_window --gtest_color=no --gtest_filter='*Fa3WindowErrors*:*/dense_d128_bf16:*/dense_d128_causal_bf16:*/longnet_d128_bf16' > $O/test_fa3_window.log 2>&1; summ test_fa3_window $? $O/test_fa3_window.log
date -u; echo "wall $(( $(date +%s) - T0 )) s"
