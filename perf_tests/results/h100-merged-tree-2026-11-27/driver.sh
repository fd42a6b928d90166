#!/usr/bin/env bash
# Lead, 2026-11-27 (fourth session): the merged cuda_fa3 tree (192-row d64
# tiles 4d15dfa, key walk + per-tile block counts 78fb7fa/8f719ab, NaN-merge fix
# 66355a3) and the portable 16-bit chunked float accumulators (1eddfe9, dbcbbb1,
# e28a219) on one H100, from HEAD e4e3a50. Test binaries run concurrently (their
# float64 references are single-threaded host code; 16 cores), then
# compute-sanitizer on small cases, then a short bench sanity check.
# Usage: verify.sh OUTDIR. Global budget 290 s.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/verify}; mkdir -p $O
D=/tmp/leadbin; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D && cp $B/*.so* $D/ 2>/dev/null
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} NCCL_NVLS_ENABLE=0 PATH=/usr/local/cuda/bin:$PATH OMP_NUM_THREADS=2
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt; date -u >> $O/gpu.txt
compute-sanitizer --version | tail -1 >> $O/gpu.txt; cat $O/gpu.txt
# The portable suite and cuda_fa3's, whole, concurrently; the Cuda 16-bit
# suites' names are listed for the sanitizer filters.
# Cuda 16-bit suites of a typed binary (TypeParam prints half_t / bhalf_t as
# floating_point_wrapper<__half> / <__nv_bfloat16>).
c16() { $D/$1 --gtest_list_tests 2>/dev/null | grep -E 'TypeParam = .*Cuda.*(__half|__nv_bfloat16|half_t)' | sed -E 's/^([A-Za-z0-9_]+\/[0-9]+)\..*/\1.*/' | sort -u | paste -sd:; }
bg() {  # name timeout binary args...
  local name=$1 to=$2; shift 2
  ( s=$(date +%s); timeout $to stdbuf -oL "$@" --gtest_color=no > $O/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s)-s ))s" > $O/$name.rc ) &
}
F16F=$(c16 test_forward); F16B=$(c16 test_backward); F16E=$(c16 test_numerics_extremes); F16N=$(c16 test_numerics_nonfinite)
echo "filters: fwd=$F16F bwd=$F16B ext=$F16E nf=$F16N" | tee $O/filters.txt
# Everything: the whole suite of every test binary (the portable ones on
# Serial and Cuda, every dtype), each binary its own process.
for t in $(cd $D && ls test_*); do bg ${t#test_} 170 $D/$t; done
wait
echo "tests done t=$(el)"
for f in $O/*.rc; do n=$(basename $f .rc); echo "$(cat $f) $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests ran' $O/$n.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' $O/$n.log | sed 's/, where.*//' | sort -u | head -8
  grep -B2 -A6 'Failure' $O/$n.log | cut -c1-240 | head -24; done
san() {  # tool name timeout binary filter
  local tool=$1 name=$2 to=$3 bin=$4 filter=$5 left=$((225 - $(el)))
  [ $left -lt 10 ] && { echo "$tool $name SKIPPED (time)"; return; }
  [ $to -gt $left ] && to=$left
  local s=$(date +%s)
  timeout $to compute-sanitizer --tool $tool --error-exitcode 9 $D/$bin --gtest_color=no --gtest_filter="$filter" > $O/$tool-$name.log 2>&1
  echo "$tool $name rc=$? $(($(date +%s)-s))s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/$tool-$name.log | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' $O/$tool-$name.log | tr '\n' ' ')"
  grep -E '^=========' $O/$tool-$name.log | grep -vE 'SUMMARY|COMPUTE-SANITIZER' | sort | uniq -c | sort -rn | head -5 | cut -c1-200
}
NF=$(echo "$F16N" | sed 's/\.\*/.FullyMaskedRowsStayZero/g')
san initcheck nonfinite16 30 test_numerics_nonfinite "$NF"
san initcheck fa3wn_nan 25 test_fa3_window_numerics '*NanInAKeyRowNonCausal/*'
FC=$(echo "$F16F" | sed 's/\.\*/.LongSequenceMergedInChunks/g')
san memcheck fwd16_chunks 40 test_forward "$FC"
echo "sanitizers done t=$(el)"
# The nightly regression check on the merged tree against h100.json (recorded
# 2026-11-27 01:42Z at b952ef1): run_nightly_h100.sh, median of 3, normalised
# by the cuBLAS bf16 GEMM of the same run.
left=$((290 - $(el))); if [ $left -gt 40 ]; then
  cp -r $B/nightly $D/ 2>/dev/null; cp $D/bench_fa3 $D/bench_gpu_reference $D/nightly/ 2>/dev/null
  timeout $left bash $D/nightly/perf_tests/run_nightly_h100.sh $D/nightly $O/nightly > $O/nightly.log 2>&1; echo "nightly rc=$?"; tail -n 15 $O/nightly.log | cut -c1-200
else echo "nightly SKIPPED (time)"; fi
echo "total $(el)s"
# One file back (the device tool returns a limited number of files).
P=$(dirname $O); tar -czf $P/verify.tar.gz -C $P $(basename $O) && rm -rf $O; ls -la $P
