#!/usr/bin/env bash
# Lead, 2026-11-27 (end of the fourth session): the final tree on one H100 -
# every unit-test binary of the CUDA build whole and concurrently (portable
# suites on Serial and Cuda in every dtype with the new default GPU forward
# pipe256l; cuda_fa3 with the rwl backward and the balanced block-sparse
# schedule), compute-sanitizer on small cases of the changed paths, then the
# H100 nightly baseline re-recorded (run_nightly_h100.sh --record) and the
# portable LongNet forward at 1M with the fp32 FMA rate in the same call.
# Usage: final.sh OUTDIR. Global budget ~300 s.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/final}; mkdir -p $O
D=/tmp/leadbin3; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D && cp $B/*.so* $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} NCCL_NVLS_ENABLE=0 PATH=/usr/local/cuda/bin:$PATH
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt; date -u >> $O/gpu.txt
compute-sanitizer --version | tail -1 >> $O/gpu.txt; cat $O/gpu.txt; cat $B/commit.txt | tee $O/commit.txt
bg() { local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) & }
for t in $(cd $D && ls test_*); do bg ${t#test_} 170 $D/$t; done
wait; echo "tests done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $O/$n.log | head -3 | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log | sed 's/, where.*//' | sort -u | head -8
  grep -B2 -A6 'Failure' $O/$n.log | cut -c1-240 | head -20; done
san() { local tool=$1 name=$2 to=$3 bin=$4 filter=$5 s=$(date +%s)
  timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $D/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')"; }
san racecheck fa3bwd 40 test_fa3_backward '*V2Pipelined*dense_d128_bf16*'
san memcheck fa3bs 30 test_fa3_forward '*block_sparse_many_tiles_d128_bf16*'
san racecheck portable_fwd 40 test_forward 'Forward/3.MatchesFloat64Reference'
echo "sanitizers done t=$(el)"
mkdir -p $O/nightly; cp -r $B/nightly/perf_tests $D/ && cp $D/perf_tests/baselines/h100.json $O/nightly/h100.before.json
BASELINE_FILE=$O/nightly/h100.json timeout 120 bash $D/perf_tests/run_nightly_h100.sh $D $O/nightly --record "$(cat $B/commit.txt)" > $O/nightly.log 2>&1; echo "nightly record rc=$?"; tail -n 12 $O/nightly.log | cut -c1-200
timeout 20 $D/bench_fp32_peak 65536 5 > $O/fp32_peak.json 2>&1; echo "fp32 peak: $(tr -d '\n' < $O/fp32_peak.json | grep -o '"fp32_fma_tflops": [0-9.]*')"
timeout 30 $D/bench_attention --benchmark_filter='BM_Attention/kind:2/seq:1048576/heads:16/dim:128/bwd:0' --benchmark_min_time=0.01 --benchmark_out=$O/portable_1m.json --benchmark_out_format=json > $O/portable_1m.log 2>&1
echo "portable LongNet 1M: $(grep -E '^BM_' $O/portable_1m.log | sed -E 's/ +/ /g' | cut -c1-160)"
echo "total $(el)s"
P=$(dirname $O); tar -czf $P/final.tar.gz -C $P $(basename $O) && rm -rf $O
