#!/usr/bin/env bash
# fa3bs request 2 (2026-11-27): cuda_fa3 block-sparse forward, final build -
# balanced per-CTA tile schedule from the plan (tile_schedule.hpp; causal
# tiles head-major too), persistent causal, second Q buffer, schedule entries
# prefetched, 16-byte output stores. Old binary (HEAD e4e3a50) vs new in the
# same call, env variants of the new one for attribution; tests vs float64;
# sanitizers. Global deadline 145 s, timeout on every step.
T0=$(date +%s); DEADLINE=$((T0 + 145))
left() { echo $((DEADLINE - $(date +%s))); }
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3bs-out}; mkdir -p $O
B=/tmp/fa3bs-bin2; mkdir -p $B
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $H/bins.tar.xz $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $3 | sed 's/, where.*//' | sort -u | head -6; }
step() {  # name, seconds wanted, command... (prints SKIPPED to stdout when out of time)
  local n=$1 s=$2; shift 2
  local l=$(left); if [ $l -lt 8 ]; then echo "$n SKIPPED (deadline)" >&2; return 99; fi
  [ $s -gt $l ] && s=$l
  stdbuf -oL timeout $s "$@"
}
bs() {  # label, binary, filter, env...
  local l=$1 b=$2 f=$3; shift 3
  if [ $(left) -lt 12 ]; then echo "$l SKIPPED (deadline)"; return; fi
  env "$@" timeout $(left) $B/$b --benchmark_filter="$f" --benchmark_out=$O/bs_$l.json > $O/bs_$l.log 2>&1
  grep -E '^BM_' $O/bs_$l.log | sed -E 's/\/min_time:[0-9.]+\/manual_time//; s/BM_Fa3BlockSparseVsDense\///; s/heads:16\///' | awk -v l=$l '{o=l" "$1" "$2" "$3; for(i=4;i<=NF;i++) if ($i ~ /^(dense_ms|vs_dense_x_density)=/ || $i ~ /ERROR/) o=o" "$i; print o}'
}
echo "== tests (float64 reference, NaN-poisoned outputs)"
step fwd 30 $B/test_fa3_forward --gtest_color=no --gtest_filter='*block_sparse*:Fa3TileSchedule*:*/dense_d128_bf16:*/dense_d128_causal_fp16:*/longnet_d128_bf16:*/dense_d64_bf16:*/dropout_longnet_d128_bf16' > $O/test_fa3_forward.log 2>&1; summ test_fa3_forward $? $O/test_fa3_forward.log
echo "== block-sparse 90% vs dense x density (bf16, 16 heads): old (e4e3a50) / new, same call"
F16='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/'
bs old16 bench_fa3_old "$F16"
bs new16 bench_fa3 "$F16"
echo "== compute-sanitizer (small block-sparse cases)"
step memcheck 20 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*block_sparse_many_tiles_d128_bf16:*block_sparse_many_tiles_d128_causal_fp16:*block_sparse_rect_d256_fp16' > $O/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/memcheck.log) ok"
F64='BM_Fa3BlockSparseVsDense/seq:65536/heads:16/dim:128/'
bs new64 bench_fa3 "$F64"
bs old64 bench_fa3_old "$F64"
echo "== variants of the new binary (narrow = 4-byte stores; kernel = causal tiles heads-innermost; q1 = one Q buffer)"
FNC='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0'
FC='BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:1'
bs narrow bench_fa3 "$FNC" DILATED_FA3_BLOCK_SPARSE_STORES=narrow
bs kernelorder bench_fa3 "$FC" DILATED_FA3_BLOCK_SPARSE_CAUSAL_ORDER=kernel
step racecheck 15 compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*block_sparse_global_local_d64_bf16' > $O/racecheck.log 2>&1
echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY' $O/racecheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/racecheck.log) ok"
bs q1 bench_fa3 "$FNC" DILATED_FA3_BLOCK_SPARSE_Q=1
bs newd64 bench_fa3 'BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:64/'
echo "== block-sparse backward (the plan's upload changed)"
step bsbwd 20 $B/test_fa3_block_sparse --gtest_color=no > $O/test_fa3_block_sparse.log 2>&1; summ test_fa3_block_sparse $? $O/test_fa3_block_sparse.log
date -u; echo "wall $(( $(date +%s) - T0 )) s"
