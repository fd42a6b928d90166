#!/usr/bin/env bash
# fa3fwd5 request 2 (one H100, <= 150 s): the cuda_fa3 forward (issue 4), final check of the new default.
#   bench_fa3_base = HEAD 8508eed; bench_fa3_v1 = request 1's "new" (the P V wait kept after the
#   softmax); bench_fa3 / tests = the candidate default (v1 + one V descriptor per step + warp-uniform
#   Q descriptors).
#   1. float64 suites of the candidate, CONCURRENTLY: test_fa3_forward, test_fa3_window,
#      test_fa3_window_numerics, test_fa3_block_sparse (all cases); racecheck + memcheck on one
#      small d128 case (unkept_rows_d128_causal_bf16) alongside
#   2. timings after the suites: base / v1 / new (d64, d128, d256 dense + causal), base2/new2 d128,
#      torch SDPA FA2/cuDNN forward on the same shapes in the same call
#   bash .deps/fa3fwd5-run/driver2.sh OUT      (run from the repository root)
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3fwd5}; mkdir -p "$O"
B=/tmp/fa3fwd5-bin; rm -rf $B; mkdir -p $B; tar xzf "$D/bins2.tgz" -C $B   # binaries carried packed (size limit)
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 145))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt 1 ] && l=1; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
el() { echo "[$(( $(date +%s) - T0 )) s]"; }
summ() { echo "$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -6; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
echo "=== 1. float64 suites (concurrent) + sanitizers on the candidate ==="
pids=()
for t in test_fa3_forward test_fa3_window test_fa3_window_numerics test_fa3_block_sparse; do
  timeout 105 "$B/$t" --gtest_color=no > "$O/$t.log" 2>&1 & pids+=($!)
done
F='*/unkept_rows_d128_causal_bf16'
( for tool in racecheck memcheck; do
    timeout 50 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$F" > "$O/san_$tool.log" 2>&1
    echo "rc=$?" >> "$O/san_$tool.log"
  done ) & pids+=($!)
i=0
for t in test_fa3_forward test_fa3_window test_fa3_window_numerics test_fa3_block_sparse; do
  wait ${pids[$i]}; echo "$t rc=$? $(summ "$O/$t.log") $(el)"; i=$((i+1))
done
wait ${pids[4]}
for tool in racecheck memcheck; do echo "$tool $(tail -n1 "$O/san_$tool.log") $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/san_$tool.log" | tail -n1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/san_$tool.log" | tr '\n' ' ')"; done
el
bench() {  # label binary filter
  local label=$1 bin=$2 filter=$3
  timeout $(lim 25) "$B/$bin" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 d\3#' \
    | awk -v l="$label" '{printf "%-6s %s %s %7s ms %s\n", l, $1, $2, $3, $(NF-2)}'
}
P='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16'
echo "=== 2. forward timings (k0 dense, k1 causal), then torch SDPA in the same call ==="
bench base bench_fa3_base "$P/dim:(64|128|256)/"
bench new bench_fa3 "$P/dim:(64|128|256)/"
bench v1 bench_fa3_v1 "$P/dim:128/"
bench base2 bench_fa3_base "$P/dim:128/"
bench new2 bench_fa3 "$P/dim:128/"
el
timeout $(lim 30) python3 - > "$O/peers.log" 2>&1 <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
print("torch", torch.__version__)
for causal in (False, True):
    for D in ((64, 128, 256) if not causal else (64, 128)):
        B, H, N = 1, 16, 16384
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        fl = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            if name == "flash" and D != 128: continue
            try:
                with sdpa_kernel([be]), torch.no_grad():
                    f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    for _ in range(3): f()
                    torch.cuda.synchronize()
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    for _ in range(30): f()
                    b.record(); torch.cuda.synchronize()
                    ms = a.elapsed_time(b) / 30
                print("%-6s %-6s d%-3d %7.3f ms %6.1f TFLOP/s" % ("causal" if causal else "dense", name, D, ms, fl / ms * 1e-9))
            except Exception as e:
                print("%-6s %-6s d%-3d error %s" % ("causal" if causal else "dense", name, D, str(e)[:100]))
PY
echo "peers rc=$?"; grep -E '^(dense|causal)' "$O/peers.log"; el
[ "$(left)" -gt 12 ] && bench new3 bench_fa3 "$P/dim:128/"
cd "$O" && tar -czf all.tar.gz --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$O"; el
