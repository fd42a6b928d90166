#!/usr/bin/env bash
# fa3fwd5 request 1 (one H100, <= 150 s): the cuda_fa3 forward (issue 4), bf16 B1 H16 N16K.
#   bench_fa3_base = HEAD (8508eed); bench_fa3 = HEAD + the wgmma wait<0> of P(kb-1)V(kb-1)
#   kept after the softmax (ptxas hoisted it above the whole softmax in HEAD's SASS).
#   1. timings base / new (d64, d128, d256 dense + causal), base2/new2 d128 again; 1b. float64 subset
#   2. torch SDPA forward (FA2, cuDNN) on the same shapes, same call
#   3. ncu on base dense d128 (full sections + source counters), 4. ncu on new dense d128
#   5. ncu base causal d128 (SOL + warp state only) if time is left
#   bash .deps/fa3fwd5-run/driver1.sh OUT      (run from the repository root)
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3fwd5}; mkdir -p "$O"
B=/tmp/fa3fwd5-bin; rm -rf $B; mkdir -p $B; tar xzf "$D/bins.tgz" -C $B   # binaries carried packed (size limit)
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 143))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
el() { echo "[$(( $(date +%s) - T0 )) s]"; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
bench() {  # label binary filter
  local label=$1 bin=$2 filter=$3
  timeout $(lim 25) "$B/$bin" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 d\3#' \
    | awk -v l="$label" '{printf "%-6s %s %s %7s ms %s\n", l, $1, $2, $3, $(NF-2)}'
}
P='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16'
echo "=== 1. forward timings (k0 dense, k1 causal) ==="
bench base bench_fa3_base "$P/dim:(64|128|256)/"
bench new bench_fa3 "$P/dim:(64|128|256)/"
bench base2 bench_fa3_base "$P/dim:128/"
bench new2 bench_fa3 "$P/dim:128/"
el
echo "=== 1b. float64 check of the new kernels: test_fa3_forward dense/wide/longnet d128, dense d64 ==="
timeout $(lim 20) "$B/test_fa3_forward" --gtest_color=no --gtest_filter='*/dense_d128_*:*wide_blocks_d128*:*longnet_d128_bf16:*dense_d64_bf16' > "$O/test_quick.log" 2>&1
echo "rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$O/test_quick.log" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$O/test_quick.log" | head -5; el
echo "=== 2. torch SDPA forward (FA2 = flash, cuDNN), same shapes ==="
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
NCU_SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section InstructionStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy"
ncu_run() {  # label binary filter timeout extra-args...
  local label=$1 bin=$2 filter=$3 to=$4; shift 4
  timeout $(lim $to) ncu --clock-control none -k regex:forward_kernel --launch-count 1 "$@" -f -o "$O/ncu_$label" \
    "$B/$bin" --benchmark_filter="$filter" > "$O/ncu_$label.log" 2>&1
  echo "ncu $label rc=$? $(el)"
  if [ -f "$O/ncu_$label.ncu-rep" ]; then
    ncu -i "$O/ncu_$label.ncu-rep" --page details --print-details all > "$O/ncu_${label}_details.txt" 2>&1 || \
      ncu -i "$O/ncu_$label.ncu-rep" --page details > "$O/ncu_${label}_details.txt" 2>&1
    ncu -i "$O/ncu_$label.ncu-rep" --page source --csv --print-source sass > "$O/ncu_${label}_sass.csv" 2>/dev/null && gzip -f "$O/ncu_${label}_sass.csv"
    ncu -i "$O/ncu_$label.ncu-rep" --page raw --csv > "$O/ncu_${label}_raw.csv" 2>/dev/null && gzip -f "$O/ncu_${label}_raw.csv"
    grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|Executed Ipc Active|No Eligible|One or More Eligible|Warp Cycles Per Issued|Registers Per|Stall' "$O/ncu_${label}_details.txt" | head -14
  fi
}
echo "=== 3. ncu base dense d128 ==="
ncu_run base_dense bench_fa3_base "$P/dim:128/" 45 $NCU_SECTIONS --section SourceCounters --import-source no
echo "=== 4. ncu new dense d128 ==="
ncu_run new_dense bench_fa3 "$P/dim:128/" 40 $NCU_SECTIONS --section SourceCounters --import-source no
echo "=== 5. ncu base + new causal d128 (SOL, warp state) ==="
[ "$(left)" -gt 20 ] && ncu_run base_causal bench_fa3_base 'BM_Fa3Forward/kind:1/batch:1/seq:16384/heads:16/dim:128/' 15 --section SpeedOfLight --section WarpStateStats
[ "$(left)" -gt 15 ] && ncu_run new_causal bench_fa3 'BM_Fa3Forward/kind:1/batch:1/seq:16384/heads:16/dim:128/' 15 --section SpeedOfLight --section WarpStateStats
rm -f "$O"/*.ncu-rep
cd "$O" && tar -czf all.tar.gz --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$O"; el
