#!/usr/bin/env bash
# Runs the cuda_fa3 checks and timings on an H100 in one go:
#   correctness suite (bf16/fp16 vs the float64 reference), compute-sanitizer
#   memcheck/racecheck/synccheck on small shapes, SASS facts (HGMMA, spills),
#   bench_fa3 + PyTorch peers (perf_tests/h100_fa3_peers.py).
# BIN holds test_fa3_forward, test_fa3_support and bench_fa3 built for sm_90a
# (e.g. build/h100/{unit_tests,perf_tests}); OUT receives logs and JSON.
#   perf_tests/run_h100_fa3.sh BIN OUT [quick]
set -uo pipefail
BIN=$1
OUT=$2
MODE=${3:-full}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"

echo "== SASS facts"
for f in "$BIN"/test_fa3_forward; do
  cuobjdump -sass "$f" > "$OUT/sass.txt" 2>/dev/null
  for op in HGMMA UTMALDG USETMAXREG LDL STL; do
    printf '%-12s %s\n' "$op" "$(grep -c "$op" "$OUT/sass.txt")"
  done | tee "$OUT/sass-counts.txt"
  rm -f "$OUT/sass.txt"
done

echo "== correctness"
timeout 60 "$BIN"/test_fa3_support 2>&1 | tail -n 5 | tee "$OUT/test_fa3_support.log"
for t in test_fa3_forward test_fa3_backward test_fa3_numerics; do
  timeout 300 "$BIN"/$t 2>&1 | tee "$OUT/$t.log" | grep -E "FAILED|PASSED|error" | tail -n 30
done

if [ "$MODE" != quick ]; then
  echo "== compute-sanitizer (small shapes)"
  for tool in memcheck racecheck synccheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 "$BIN"/test_fa3_forward \
      --gtest_filter='*dense_d64_bf16*:*w_mod_r_d64_causal_fp16*:*unkept_rows_d128_bf16*' > "$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool forward rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -n 1)"
    compute-sanitizer --tool $tool --error-exitcode 9 "$BIN"/test_fa3_backward \
      --gtest_filter='*dense_d64_bf16*:*w_mod_r_d64_causal_fp16*' > "$OUT/sanitizer-bwd-$tool.log" 2>&1
    echo "$tool backward rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-bwd-$tool.log" | tail -n 1)"
  done
fi

echo "== timings"
python3 "$(dirname "$0")/h100_fa3_peers.py" --bench "$BIN"/bench_fa3 --out "$OUT/fa3-peers.json" \
  ${BENCH_ARGS:+"--bench-args=$BENCH_ARGS"} ${NO_LONGNET_PEER:+--no-longnet-peer} 2>&1 | tee "$OUT/fa3-peers.log" | tail -n 30
