#!/bin/bash
# offload4m request 2 (issue 4: LongNet forward + backward at 4M tokens on one H100 through src/offload).
# 1. bench_offload: N = 4M, 16 heads, d = 128, bf16, LongNet w = 2048..32768 r = 1,2,4,6,12;
#    q, k, v, out, lse on the device, dout, dq, dk, dv in host pinned memory; chunks 32K (headline: its memory measured alone), 64K, 128K; whole-sequence forward compared element by element.
# 2. test_offload_fa3: streamed (host-resident tensors) vs resident cuda_fa3 at 256K and smaller.
# 3. compute-sanitizer memcheck on the small cases.
# Global deadline 140 s; every step under timeout. Everything written goes into $1/all.tar.gz.
set -u
OUT=${1:-/tmp/offload4m-out}
mkdir -p "$OUT"
D=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$D:${LD_LIBRARY_PATH:-}"
START=$(date +%s)
DEADLINE=$((START + 145))
left() { echo $((DEADLINE - $(date +%s))); }
run() {  # run SECONDS cmd...: at most SECONDS, never past the deadline
  local t=$1; shift
  local l; l=$(left)
  [ "$t" -gt "$l" ] && t=$l
  if [ "$t" -le 3 ]; then echo "SKIPPED (deadline): $*"; return 124; fi
  timeout "$t" "$@"
}
date -u +%FT%TZ
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
free -g | head -2
nproc

echo "=== 1. bench_offload 4M (timeout 100 s)"
run 100 stdbuf -oL "$D/bench_offload" --json "$OUT/offload4m.json" > "$OUT/bench.log" 2>&1
echo "rc=$? elapsed $(( $(date +%s) - START )) s"
grep -v '^JSON' "$OUT/bench.log" | cut -c1-400 | tail -n 45

echo "=== 2. test_offload_fa3 (timeout 40 s)"
run 40 "$D/test_offload_fa3" > "$OUT/gtest.log" 2>&1
echo "rc=$? elapsed $(( $(date +%s) - START )) s"
grep -E '^\[ +(OK|FAILED|PASSED|SKIPPED) |^\[ offload \]|Failure|Expected|Which is|actual|error' "$OUT/gtest.log" | cut -c1-300 | head -n 40

echo "=== 3. compute-sanitizer memcheck, small cases"
run 25 compute-sanitizer --tool memcheck --leak-check no "$D/test_offload_fa3" \
  --gtest_filter='OffloadFa3.Small*:OffloadFa3.Refuses*' > "$OUT/memcheck.log" 2>&1
echo "rc=$? elapsed $(( $(date +%s) - START )) s"
grep -E 'ERROR SUMMARY|^\[ +(OK|FAILED|PASSED) ' "$OUT/memcheck.log" | head -n 10

cd "$OUT" && tar -czf all.tar.gz --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$OUT"
