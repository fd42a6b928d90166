#!/usr/bin/env bash
# fa3bwd2 request 3 (one H100, <= 120 s): the whole test_fa3_window with the new default
# head_dim 128 backward schedule rwl (request 2 cut it after 22 of its 23 d128 cases), then
# a second same-call sample of ours (rwl) vs cuDNN / FA2. Tarred into $1/result3.tgz.
#   bash .deps/fa3bwd2-run/driver3.sh OUT      (run from the repository root)
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd); TOP=${1:-/tmp/fa3bwd2}; O=$TOP/run; mkdir -p "$O"
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 112))
lim() { local l=$(( END - $(date +%s) )); [ "$l" -lt 1 ] && l=1; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
echo "=== 1. float64: test_fa3_window, all cases (default: rwl for head_dim 128 equal windows)"
timeout $(lim 95) "$B/test_fa3_window" --gtest_color=no > "$O/test_fa3_window.log" 2>&1
echo "rc=$? $(grep -E '^\[  (PASSED|FAILED) |tests ran' "$O/test_fa3_window.log" | tr '\n' ' ') OK=$(grep -c '^\[       OK' "$O/test_fa3_window.log")"
grep -E '^\[  FAILED  \] ' "$O/test_fa3_window.log" | sed 's/, where.*//' | sort -u | head -6
echo "elapsed $(( $(date +%s) - T0 )) s"
echo "=== 2. peers again (cuDNN / FA2 SDPA, same call) vs ours (default = rwl)"
timeout $(lim 30) python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="--benchmark_filter=BM_Fa3Backward/kind:[01]/" > "$O/peers.log" 2>&1
echo "rc=$?"; grep -E "bwd" "$O/peers.log" | tail -2
echo "total elapsed $(( $(date +%s) - T0 )) s"
tar czf "$TOP/result3.tgz" -C "$TOP" run && rm -rf "$O" && ls -la "$TOP"
