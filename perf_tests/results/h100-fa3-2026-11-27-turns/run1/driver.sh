#!/usr/bin/env bash
# Lead, 2026-11-27 (ninth session), issue 4: tile boundaries. Consumer turns carried across tiles
# (DILATED_FA3_TURNS=tile: before) and a second Q buffer for the strided grids (DILATED_FA3_QBUF=1: before,
# =fused: fused chains only). One binary, runtime knobs, alternating in this call.
# A. smoke: a few forward cases at 2 CTAs (many tiles per CTA: the carried turns) and defaults.
# B. LongNet 1M d128: base / carry / qbuf / both / carry+qbuf-fused, two rounds; d64, d256 base vs both;
#    dense, causal (d64, d128) and block-sparse 16K base vs both, two rounds.
# Usage: bash driver.sh OUTDIR   (from a carry folder holding new.tar.xz, libcudart.so.13, libbenchmark.so.1debian)
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/run1}; mkdir -p $O
N=/tmp/s9new1; mkdir -p $N; tar -xJf $B/new.tar.xz -C $N && cp $B/*.so* $B/*.py $N/ 2>/dev/null
export LD_LIBRARY_PATH=$N:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader; cat $B/new_commit.txt; } | tee $O/machine.txt
S='*/fused_r124_d128_bf16:*/fused_then_r6_d128_bf16:*/dense_d64_bf16:*/longnet_d128_bf16:*/fused_r124_d64_fp16:*/chain_r1248_d128_bf16'
( export DILATED_FA3_MAX_CTAS=2; timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter="$S" > $O/smoke_cta2.log 2>&1 ) &
timeout 200 $N/test_fa3_forward --gtest_color=no --gtest_filter="$S" > $O/smoke.log 2>&1 &
( export DILATED_FA3_MAX_CTAS=2; timeout 200 $N/test_fa3_block_sparse --gtest_color=no --gtest_filter='*Forward*many_tiles*:*Forward*random90*' > $O/smoke_bs.log 2>&1 ) &
wait
for f in smoke smoke_cta2 smoke_bs; do echo "$f: $(grep -E '^\[  (PASSED|FAILED) ' $O/$f.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$f.log | sed 's/, where.*//' | sort -u | head; done
echo "A t=$(el)"
row() { grep -E '^BM_' $1 | sed -E 's/ +/ /g; s/BM_Fa3(Forward|BlockSparseVsDense)\///; s/min_time:1.000\/manual_time//' | awk -v t=$2 '{print t, $0}' | cut -c1-150; }
cfg() { unset DILATED_FA3_TURNS DILATED_FA3_QBUF
  case $1 in base) export DILATED_FA3_TURNS=tile DILATED_FA3_QBUF=1;; carry) export DILATED_FA3_QBUF=1;;
    qbuf) export DILATED_FA3_TURNS=tile;; both) ;; carryfq) export DILATED_FA3_QBUF=fused;; esac; }
bench() { local name=$1 filter=$2; DILATED_BENCH_MIN_TIME=1 timeout 90 $N/bench_fa3 --benchmark_filter="$filter" --benchmark_out=$O/$name.json --benchmark_out_format=json > $O/$name.log 2>&1; row $O/$name.log $name; }
F='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128/'
for r in 1 2; do for v in base carry qbuf both carryfq; do cfg $v; bench ln_${v}_$r "$F"; done; done; echo "B1 t=$(el)"
for v in base both; do cfg $v; bench ln64_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/'; bench ln256_$v 'BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:256/'; done
echo "B2 t=$(el)"
D='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128)/|BM_Fa3BlockSparseVsDense/seq:16384/heads:16/dim:128/causal:0/'
for r in 1 2; do for v in base both; do cfg $v; bench dense_${v}_$r "$D"; done; done
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/run1.tar.gz -C $P $(basename $O) && rm -rf $O
