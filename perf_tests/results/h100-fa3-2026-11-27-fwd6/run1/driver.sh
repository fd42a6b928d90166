#!/usr/bin/env bash
# fa3fwd6 request 1 (one H100, <= 150 s): cuda_fa3 forward (issue 4), bf16 B1 H16 N16K.
#   bench_fa3      = HEAD + wave-tail split over keys (forward_split.cuh; DILATED_FA3_SPLIT=off disables)
#   bench_fa3_base = the same binary with HEAD's forward_launch.cu/plan.cu objects (HEAD 06a0e9e)
#   bench_fa3_chain4 / _expfma = new + 4-chain row max/sum / every 4th exp2 on the FMA pipe (cubic)
#   DILATED_FA3_D128_KEYS=128: 128-key blocks instead of 176 (new binary)
#   1. timings (variants in one call), 2. torch cuDNN/FA2 forward, 3. ncu new dense d128 (source counters),
#   0 (first). float64 tests (non-causal non-sparse cases, default and DILATED_FA3_SPLIT=3) + racecheck, in parallel
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3fwd6}; mkdir -p "$O"
B=/tmp/fa3fwd6-bin; rm -rf $B; mkdir -p $B; tar xzf "$D/bins.tgz" -C $B
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 143))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
el() { echo "[$(( $(date +%s) - T0 )) s]"; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
bench() {  # label binary filter [env...]
  local label=$1 bin=$2 filter=$3; shift 3
  mark "$label"
  env "$@" timeout $(lim 25) "$B/$bin" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 d\3#' \
    | awk -v l="$label" '{printf "%-8s %s %s %7s ms %s\n", l, $1, $2, $3, $(NF-2)}'
}
P='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16'
D128="BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/"
echo "=== 0. float64 tests: non-causal, non-block-sparse, no dropout (default; SPLIT=3 forces 3 pieces) + racecheck ==="
F='*MatchesFloat64Reference/*:-*causal*:*block_sparse*:*dropout*'
T=$(lim 40)
timeout $T "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$F" > "$O/test_default.log" 2>&1 &
p1=$!
DILATED_FA3_SPLIT=3 timeout $T "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$F" > "$O/test_split3.log" 2>&1 &
p2=$!
DILATED_FA3_SPLIT=2 timeout $T compute-sanitizer --tool racecheck "$B/test_fa3_forward" --gtest_color=no \
  --gtest_filter='*/dense_d128_bf16:*/dense_d64_bf16' > "$O/san_racecheck.log" 2>&1 &
p3=$!
wait $p1; echo "default rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$O/test_default.log" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$O/test_default.log" | head -5
wait $p2; echo "split3 rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$O/test_split3.log" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$O/test_split3.log" | head -5
wait $p3; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|PASSED|FAILED' "$O/san_racecheck.log" | tr '\n' ' ')"
el
# SM clock and power every 100 ms through sections 1-2 (is the sustained run power-limited?)
stdbuf -oL nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 >> "$O/clocks.csv" 2>&1 &
SMI=$!
mark() { echo "MARK $1 $(date +%H:%M:%S.%N | cut -c1-12)" >> "$O/clocks.csv"; }
echo "=== 1. forward timings (k0 dense, k1 causal) ==="
bench new bench_fa3 "$P/dim:128/|BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:(64|256)/"
bench base bench_fa3_base "$P/dim:128/|BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:(64|256)/"
bench nosplit bench_fa3 "$D128" DILATED_FA3_SPLIT=off
bench keys128 bench_fa3 "$D128" DILATED_FA3_D128_KEYS=128
bench chain4 bench_fa3_chain4 "$D128"
bench expfma bench_fa3_expfma "$D128"
bench new2 bench_fa3 "$D128"
bench base2 bench_fa3_base "$D128"
el
echo "=== 2. torch SDPA forward (FA2 = flash, cuDNN), same shapes ==="
mark torch
timeout $(lim 25) python3 - > "$O/peers.log" 2>&1 <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
for causal, D in ((False, 128), (True, 128), (False, 64), (False, 256)):
    B, H, N = 1, 16, 16384
    q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    fl = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
    for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION),) + ((("flash", SDPBackend.FLASH_ATTENTION),) if D == 128 and not causal else ()):
        try:
            with sdpa_kernel([be]), torch.no_grad():
                f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                for _ in range(3): f()
                torch.cuda.synchronize()
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                for _ in range(40): f()
                b.record(); torch.cuda.synchronize()
                ms = a.elapsed_time(b) / 40
            print("%-6s %-6s d%-3d %7.3f ms %6.1f TFLOP/s" % ("causal" if causal else "dense", name, D, ms, fl / ms * 1e-9))
        except Exception as e:
            print("%-6s %-6s d%-3d error %s" % ("causal" if causal else "dense", name, D, str(e)[:100]))
PY
echo "peers rc=$?"; grep -E '^(dense|causal|torch)' "$O/peers.log"; el
echo "=== 2b. new d128 dense again, after torch ==="
bench new3 bench_fa3 "$D128"
bench base3 bench_fa3_base "$D128"
bench nosplit3 bench_fa3 "$D128" DILATED_FA3_SPLIT=off
el
kill $SMI 2>/dev/null
awk -F", " '/MARK/{l=$0; sub(/MARK /,"",l); split(l,a," "); cur=a[1]; next} NF>=3 && $3+0>300{c[cur]+=$2; p[cur]+=$3; n[cur]++} END{for(k in n) printf "clock %-9s %5.0f MHz %6.1f W (%d samples > 300 W)\n", k, c[k]/n[k], p[k]/n[k], n[k]}' "$O/clocks.csv" | sort
echo "=== 3. ncu new dense d128 (split on) ==="
NCU_SECTIONS="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats --section LaunchStats"
timeout $(lim 35) ncu --clock-control none -k regex:forward_kernel --launch-skip 2 --launch-count 1 $NCU_SECTIONS \
  --section SourceCounters --import-source no -f -o "$O/ncu_new_dense" "$B/bench_fa3" --benchmark_filter="$D128" > "$O/ncu_new_dense.log" 2>&1
echo "ncu rc=$? $(el)"
if [ -f "$O/ncu_new_dense.ncu-rep" ]; then
  ncu -i "$O/ncu_new_dense.ncu-rep" --page details > "$O/ncu_new_dense_details.txt" 2>&1
  ncu -i "$O/ncu_new_dense.ncu-rep" --page source --csv --print-source sass > "$O/ncu_new_dense_sass.csv" 2>/dev/null && gzip -f "$O/ncu_new_dense_sass.csv"
  grep -E 'Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Registers Per' "$O/ncu_new_dense_details.txt" | head -10
fi
rm -f "$O"/*.ncu-rep
cd "$O" && tar -czf all.tar.gz --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$O"; el
