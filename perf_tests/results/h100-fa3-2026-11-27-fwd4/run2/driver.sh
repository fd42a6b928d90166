#!/usr/bin/env bash
# fa3fwd request 2 (one H100, <= 150 s): the cuda_fa3 forward after request 1
# (head_dim 64 on 192-row tiles by default; exp-on-FMA and 3-stage variants
# dropped). Timings of HEAD (bench_fa3_base) vs the new default and the
# key-ahead variants (DILATED_FA3_D64=m192k, DILATED_FA3_D128_KEY_AHEAD=1),
# torch SDPA FA2/cuDNN forward on the same shapes, float64 suites for the
# default and both variants, memcheck/racecheck on small cases.
#   bash .deps/fa3fwd-run/driver2.sh OUT      (run from the repository root)
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3fwd2}; mkdir -p "$O"
B=/tmp/fa3fwd-bin; rm -rf $B; mkdir -p $B; tar xzf "$D/bins.tgz" -C $B   # binaries carried packed (size limit)
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt"
cat "$O/machine.txt"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s]"; }
bench() {  # label filter envs...
  local label=$1 filter=$2; shift 2
  local bin=bench_fa3; case $label in base*) bin=bench_fa3_base;; esac
  env "$@" timeout 30 "$B/$bin" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 N\2 d\3#' \
    | awk -v l="$label" '{printf "%-8s %s %s %s %7s ms %s\n", l, $1, $2, $3, $4, $(NF-2)}'
}
P='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16'
LN64='BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:64/'
echo "=== 1. forward timings, bf16 (k0 dense, k1 causal: B 1, H 16, N 16K; k2 LongNet 1M x 16, d64) ==="
bench base "$P/dim:(64|128)/|$LN64"
bench new "$P/dim:(64|128)/|$LN64"
bench m192k "$P/dim:64/" DILATED_FA3_D64=m192k
bench d128ka "$P/dim:128/" DILATED_FA3_D128_KEY_AHEAD=1
bench m128 "$P/dim:64/" DILATED_FA3_D64=m128
bench base2 "$P/dim:(64|128)/"
bench new2 "$P/dim:(64|128)/"
el
echo "=== 2. torch SDPA forward, same shapes (FA2 = FLASH, cuDNN) ==="
timeout 40 python3 - > "$O/peers.log" 2>&1 <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
print("torch", torch.__version__)
for causal in (False, True):
    for D in (64, 128):
        B, H, N = 1, 16, 16384
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        fl = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
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
PY
echo "peers rc=$?"; grep -E '^(dense|causal)' "$O/peers.log"; el
echo "=== 3. float64 suites ==="
gt() {  # label timeout envs... -- binary args...
  local label=$1 to=$2; shift 2; local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local bin=$1; shift
  env "${envs[@]}" timeout $to "$B/$bin" --gtest_color=no "$@" > "$O/$label.log" 2>&1
  echo "$label rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$O/$label.log" | tr '\n' ' ') $(el)"
  grep -E '^\[  FAILED  \] ' "$O/$label.log" | sed 's/, where.*//' | sort -u | head -6
}
gt fwd_default 45 -- test_fa3_forward --gtest_filter='-*block_sparse*:*d256*'
gt numerics_default 20 -- test_fa3_numerics
gt window_default 30 -- test_fa3_window --gtest_filter='*d64*:*dense_d128_causal*:*Masked*:*Errors*'
gt fwd_m192k 20 DILATED_FA3_D64=m192k -- test_fa3_forward --gtest_filter='*/dense_d64_*:*w_mod_r_d64*:*r16_d64*:*partial_segments_d64*'
gt fwd_d128ka 20 DILATED_FA3_D128_KEY_AHEAD=1 -- test_fa3_forward --gtest_filter='*/dense_d128_*:*unkept_rows_d128*:*wide_blocks_d128*:*longnet_d128_*'
echo "=== 4. compute-sanitizer, small cases (default m192; m192k; d128 key-ahead) ==="
F='*/w_mod_r_d64_causal_bf16:*/partial_segments_d64_fp16:*/unkept_rows_d128_causal_bf16'
for tool in memcheck racecheck; do
  for v in default keyahead; do
    envs="DILATED_FA3_D64=m192"; [ $v = keyahead ] && envs="DILATED_FA3_D64=m192k DILATED_FA3_D128_KEY_AHEAD=1"
    env $envs timeout 25 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_forward" --gtest_color=no \
      --gtest_filter="$F" > "$O/san_${tool}_$v.log" 2>&1
    echo "$tool [$envs] rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/san_${tool}_$v.log" | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/san_${tool}_$v.log" | tr '\n' ' ') $(el)"
  done
done
echo "total $(el)"
